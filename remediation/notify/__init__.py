"""Notifications of a scheduled run: ``alerts`` (PagerDuty / Slack) and ``metrics`` (Prometheus textfile)."""
