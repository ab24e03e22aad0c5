"""recover-corrupted-database: recover into a new verified file; the original is quarantined, never deleted."""

from __future__ import annotations

import sys

from remediation import cli
from remediation.actions.core import Remediation
from remediation.actions.recovery import recover_database
from remediation.scripts import fix_type


@fix_type(
    title="Database corruption",
    symptoms=[
        "Database integrity check failed",
        "database disk image is malformed",
        "file is not a database",
    ],
    causes=[
        "Crash during write",
        "Disk errors",
        "Copying a live database file",
    ],
    solutions=[
        "Stop the backend",
        "Recover into a new file: sqlite3 .recover, else Python iterdump, else the newest verified backup",
        "Verify the new file with integrity_check",
        "Move the original into backup_dir/quarantine/<timestamp>/ (never deleted)",
        "Report row counts per table before and after",
        "Start the backend",
    ],
    unsafe_in_runbook=[
        'rm of the database and "the application will create a new database" loses every row',
        "find /backups | head -1 picks an arbitrary, unverified backup",
    ],
)
def recover(r: Remediation) -> None:
    """Quarantine the original, recover a copy, verify it, install it, count rows before and after."""
    recover_database(r)


if __name__ == "__main__":
    sys.exit(cli.main(__spec__.name))
