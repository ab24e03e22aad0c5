"""resolve-performance-issues: the runbook's performance fixes without drop_caches or truncate."""

from __future__ import annotations

import sys
import time
from contextlib import closing

from remediation import safety
from remediation.safety import Remediation


def high_cpu(r: Remediation) -> None:
    """List the top CPU users, restart backend and frontend by pid file or unit."""
    r.observe("top CPU users", lambda: safety.top_processes("cpu"))
    safety.restart_service(r, "backend")
    safety.restart_service(r, "frontend")


def high_memory(r: Remediation) -> None:
    """List the top memory users and restart the backend; page caches are the kernel's business."""
    r.observe("top memory users", lambda: safety.top_processes("memory"))
    safety.restart_service(r, "backend")


def _count_timings(r: Remediation) -> dict[str, str]:
    out = {}
    with closing(safety._ro(r.profile.db_path)) as conn:
        for table in r.profile.db_tables:
            started = time.perf_counter()
            conn.execute(f'SELECT COUNT(*) FROM "{table}"').fetchone()
            out[table] = f"{time.perf_counter() - started:.3f} s"
    return out


def slow_database(r: Remediation) -> None:
    """Time the COUNT(*) queries, ANALYZE + PRAGMA optimize after a verified backup, time them again."""
    r.observe("COUNT(*) timings before", lambda: _count_timings(r))
    safety.maintain_database(r, "ANALYZE; PRAGMA optimize")
    r.observe("COUNT(*) timings after", lambda: _count_timings(r))


def disk_io(r: Remediation) -> None:
    """Rotate oversized logs (rename + gzip), then VACUUM after a verified backup."""
    safety.rotate_logs(r)
    safety.maintain_database(r, "VACUUM")


FIXES = {"high_cpu": high_cpu, "high_memory": high_memory, "slow_database": slow_database, "disk_io": disk_io}

if __name__ == "__main__":
    sys.exit(safety.main("resolve-performance-issues", FIXES))
