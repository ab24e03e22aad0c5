"""Maps failing checks to the runbook's fixes, runs those fixes safely and writes the incident reports."""
