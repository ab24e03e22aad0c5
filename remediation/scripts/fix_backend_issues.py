"""fix-backend-issues: the runbook's backend fixes, made safe (see remediation.safety for the rules)."""

from __future__ import annotations

import sys

from observe.processes import top_processes
from remediation import cli
from remediation.actions.core import Remediation
from remediation.actions.database import maintain_database
from remediation.actions.logs import rotate_logs
from remediation.actions.services import restart_service, start_service, stop_service
from remediation.scripts import fix_type


@fix_type(
    title="API endpoints returning errors",
    symptoms=[
        "API endpoints returning 500 errors",
        "Connection timeouts",
        "Cannot connect to the API",
    ],
    causes=[
        "Backend process crashed or hung",
        "Unhandled exception after a deploy",
        "Database connection errors",
    ],
    solutions=[
        "Restart the backend (stop by pid file or unit, start, wait for the health endpoint)",
        "Read the last backend error log lines for the exception",
        "Probe the health endpoint again",
    ],
    unsafe_in_runbook=[],
)
def api_errors(r: Remediation) -> None:
    """Restart the backend by pid file or unit and wait for its health endpoint."""
    restart_service(r, "backend")


@fix_type(
    title="Backend database errors",
    symptoms=[
        "Database connection errors",
        "Database integrity check failed",
    ],
    causes=[
        "Fragmented or damaged database file",
        "Stale indexes",
    ],
    solutions=[
        "Stop the backend",
        "Verified online backup (sqlite3 backup API + integrity_check)",
        "integrity_check; only when ok: VACUUM and REINDEX",
        "Start the backend",
        "When integrity fails: recover-corrupted-database instead",
    ],
    unsafe_in_runbook=[
        "cp of a live SQLite file can copy a torn page: the online backup API is used instead",
    ],
)
def database_issues(r: Remediation) -> None:
    """Stop the backend, verified backup, VACUUM + REINDEX only when integrity_check is ok, start it again."""
    stop_service(r, "backend")
    try:
        maintain_database(r, "VACUUM; REINDEX")
    finally:
        # The backend comes back even when the database work stopped: the checks will say what is still wrong.
        start_service(r, "backend")


@fix_type(
    title="Backend slow",
    symptoms=[
        "Slow response times",
        "Large log files",
    ],
    causes=[
        "Oversized logs",
        "Memory growth in long-running workers",
        "Missing query statistics",
    ],
    solutions=[
        "Rotate logs above thresholds.log_max_bytes (rename + gzip, every byte kept)",
        "Restart backend and frontend by pid file or unit",
        "ANALYZE the database after a verified backup",
    ],
    unsafe_in_runbook=[
        "truncate -s 50M loses log lines: logs are rotated and compressed instead",
    ],
)
def performance_issues(r: Remediation) -> None:
    """Rotate oversized logs (never truncate), restart backend and frontend, ANALYZE after a verified backup."""
    rotate_logs(r)
    restart_service(r, "backend")
    restart_service(r, "frontend")
    maintain_database(r, "ANALYZE")


@fix_type(
    title="Backend high memory",
    symptoms=[
        "Backend process high memory",
    ],
    causes=[
        "Memory leak in a worker",
        "Large result sets held in memory",
    ],
    solutions=[
        "Record the backend's memory, restart it by pid file or unit, record memory again",
        "Open an issue with both numbers when memory climbs back",
    ],
    unsafe_in_runbook=[],
)
def memory_issues(r: Remediation) -> None:
    """Record the top memory users, restart the backend, record again."""
    r.observe("top memory users before", lambda: top_processes("memory"))
    restart_service(r, "backend")
    r.observe("top memory users after", lambda: top_processes("memory"))


if __name__ == "__main__":
    sys.exit(cli.main(__spec__.name))
