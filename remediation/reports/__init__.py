"""Incident reports: the record (``incident``) and one writer per format (``json_report``; ``html_report``, the
page, which the recorder writes after the verdict)."""
