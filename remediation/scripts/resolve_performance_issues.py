"""resolve-performance-issues: the runbook's performance fixes without drop_caches or truncate."""

from __future__ import annotations

import sys
import time
from contextlib import closing

from observe.db import connect_ro
from observe.processes import top_processes
from remediation import cli
from remediation.actions.core import Remediation
from remediation.actions.database import maintain_database
from remediation.actions.logs import free_database_filesystem, rotate_logs
from remediation.actions.services import restart_service
from remediation.scripts import fix_type


@fix_type(
    title="High CPU",
    symptoms=[
        "High CPU usage",
        "Backend process high CPU",
    ],
    causes=[
        "Runaway request handler",
        "Background task loop",
        "Other processes on the host",
    ],
    solutions=[
        "List the top CPU processes (read-only)",
        "Restart backend and frontend by pid file or unit",
    ],
    unsafe_in_runbook=[],
)
def high_cpu(r: Remediation) -> None:
    """List the top CPU users, restart backend and frontend by pid file or unit."""
    r.observe("top CPU users", lambda: top_processes("cpu"))
    restart_service(r, "backend")
    restart_service(r, "frontend")


@fix_type(
    title="High memory",
    symptoms=[
        "High memory usage",
    ],
    causes=[
        "Memory leak",
        "Other processes on the host",
    ],
    solutions=[
        "List the top memory processes (read-only)",
        "Restart the backend by pid file or unit",
    ],
    unsafe_in_runbook=[
        "echo 3 > /proc/sys/vm/drop_caches frees no application memory and stalls every process's I/O",
    ],
)
def high_memory(r: Remediation) -> None:
    """List the top memory users and restart the backend; page caches are the kernel's business."""
    r.observe("top memory users", lambda: top_processes("memory"))
    restart_service(r, "backend")


def _count_timings(r: Remediation) -> dict[str, str]:
    out = {}
    with closing(connect_ro(r.profile.db_path)) as conn:
        for table in r.profile.db_tables:
            started = time.perf_counter()
            conn.execute(f'SELECT COUNT(*) FROM "{table}"').fetchone()
            out[table] = f"{time.perf_counter() - started:.3f} s"
    return out


@fix_type(
    title="Slow database",
    symptoms=[
        "Slow query detected",
    ],
    causes=[
        "Missing statistics",
        "Fragmentation",
        "Large tables",
    ],
    solutions=[
        "Verified online backup",
        "ANALYZE and PRAGMA optimize",
        "Time the COUNT(*) queries before and after",
    ],
    unsafe_in_runbook=[],
)
def slow_database(r: Remediation) -> None:
    """Time the COUNT(*) queries, ANALYZE + PRAGMA optimize after a verified backup, time them again."""
    r.observe("COUNT(*) timings before", lambda: _count_timings(r))
    maintain_database(r, "ANALYZE; PRAGMA optimize")
    r.observe("COUNT(*) timings after", lambda: _count_timings(r))


@fix_type(
    title="Disk I/O or space",
    symptoms=[
        "Low disk space",
        "Large log files",
    ],
    causes=[
        "Oversized logs",
        "Bloated database",
    ],
    solutions=[
        "Rotate logs above thresholds.log_max_bytes (rename + gzip)",
        "VACUUM after a verified backup",
    ],
    unsafe_in_runbook=[
        "truncate -s 50M of logs loses data",
    ],
)
def disk_io(r: Remediation) -> None:
    """Rotate oversized logs (rename + gzip), then VACUUM after a verified backup."""
    rotate_logs(r)
    maintain_database(r, "VACUUM")


@fix_type(
    title="Database filesystem nearly full",
    symptoms=[
        "database or disk is full",
        "Less than 10 % free on the filesystem holding the database",
    ],
    causes=[
        "Logs grown without rotation",
        "Backups piling up beside the database",
    ],
    solutions=[
        "Name the largest files under the log and backup directories (read-only)",
        "Rotate and gzip the logs on that filesystem, largest first, until 10 % is free again (every byte verified)",
        "Backups are never removed automatically: a human moves them to other storage",
    ],
    unsafe_in_runbook=[
        "VACUUM needs free space the size of the database: on a full disk it fails or fills the disk",
        "truncating logs loses the incident's evidence",
    ],
)
def disk_space(r: Remediation) -> None:
    """Name the largest files, then rotate and gzip logs on the database's filesystem until it has room again."""
    free_database_filesystem(r)


if __name__ == "__main__":
    sys.exit(cli.main(__spec__.name))
