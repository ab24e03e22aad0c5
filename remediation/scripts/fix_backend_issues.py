"""fix-backend-issues: the runbook's backend fixes, made safe (see remediation.safety for the rules)."""

from __future__ import annotations

import sys

from remediation import safety
from remediation.safety import Remediation


def api_errors(r: Remediation) -> None:
    """Restart the backend by pid file or unit and wait for its health endpoint."""
    safety.restart_service(r, "backend")


def database_issues(r: Remediation) -> None:
    """Stop the backend, verified backup, VACUUM + REINDEX only when integrity_check is ok, start it again."""
    safety.stop_service(r, "backend")
    try:
        safety.maintain_database(r, "VACUUM; REINDEX")
    finally:
        # The backend comes back even when the database work stopped: the checks will say what is still wrong.
        safety.start_service(r, "backend")


def performance_issues(r: Remediation) -> None:
    """Rotate oversized logs (never truncate), restart backend and frontend, ANALYZE after a verified backup."""
    safety.rotate_logs(r)
    safety.restart_service(r, "backend")
    safety.restart_service(r, "frontend")
    safety.maintain_database(r, "ANALYZE")


def memory_issues(r: Remediation) -> None:
    """Record the top memory users, restart the backend, record again."""
    r.observe("top memory users before", lambda: safety.top_processes("memory"))
    safety.restart_service(r, "backend")
    r.observe("top memory users after", lambda: safety.top_processes("memory"))


FIXES = {
    "api_errors": api_errors,
    "database_issues": database_issues,
    "performance_issues": performance_issues,
    "memory_issues": memory_issues,
}

if __name__ == "__main__":
    sys.exit(safety.main("fix-backend-issues", FIXES))
