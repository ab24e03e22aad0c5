"""emergency-system-recovery: the runbook's full restart, with backups verified and nothing deleted."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import psutil

from remediation import safety
from remediation.safety import Remediation


def recover(r: Remediation) -> None:
    """Stop, report resources, verified emergency backup, rotate logs, end orphaned browsers, start and wait."""
    safety.stop_service(r, "backend")
    safety.stop_service(r, "frontend")
    disk = shutil.disk_usage(r.profile.disk_path)
    r.observe("disk", lambda: f"{disk.used / disk.total:.0%} used of {disk.total / 2**30:.1f} GiB")
    r.observe("memory", lambda: f"{psutil.virtual_memory().percent:.0f}% used")
    safety.backup_database(r)
    safety.archive_credentials(r, Path(r.profile.backup_dir) / "emergency")
    safety.rotate_logs(r)
    safety.end_orphaned_browsers(r)
    safety.start_service(r, "backend")
    safety.start_service(r, "frontend")


FIXES = {"": recover}

if __name__ == "__main__":
    sys.exit(safety.main("emergency-system-recovery", FIXES))
