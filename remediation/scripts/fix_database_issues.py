"""fix-database-issues: maintenance of the SQLite file, each change after a verified online backup."""

from __future__ import annotations

import sys
from pathlib import Path

from observe.files import secret_files
from observe.services import describe_pid, holders, service_process
from remediation import cli
from remediation.actions.core import Remediation
from remediation.actions.database import maintain_database
from remediation.actions.files import fix_permissions
from remediation.actions.services import restart_service
from remediation.scripts import fix_type


@fix_type(
    title="Database bloated",
    symptoms=[
        "Database has many unused pages",
        "Database file is very large",
    ],
    causes=[
        "Deleted rows leave free pages until VACUUM",
    ],
    solutions=[
        "Verified online backup into backup_dir",
        "VACUUM",
        "Compare row checksums of every table before and after",
    ],
    unsafe_in_runbook=[
        "VACUUM without a backup",
    ],
)
def vacuum(r: Remediation) -> None:
    """Verified backup, VACUUM, row checksums equal before and after."""
    maintain_database(r, "VACUUM")


@fix_type(
    title="Database, .env or credential permissions",
    symptoms=[
        "Database file is not readable",
        "Database file is not writable",
        "Credentials readable by other users",
    ],
    causes=[
        "Files copied with the wrong umask",
        "Manual edits as another user",
    ],
    solutions=[
        "chmod: owner read/write restored, group/other bits removed, for the database, the .env file and "
        "credential files",
        "Ownership (chown) stays a human decision: the fix reports it",
    ],
    unsafe_in_runbook=[],
)
def permissions(r: Remediation) -> None:
    """chmod the database, .env and credentials: owner read/write, no group/other bits (chown is a human call)."""
    fix_permissions(r, secret_files(r.profile))


@fix_type(
    title="Database locked",
    symptoms=[
        "Database is locked",
        "Operations timeout",
    ],
    causes=[
        "Long-running transaction",
        "Zombie process holding lock",
    ],
    solutions=[
        "List the processes holding the database file open (pid, command)",
        "Restart the backend by pid file or unit",
        "Other holders are reported for a human to end by pid",
    ],
    unsafe_in_runbook=[
        "pkill -f python",
    ],
)
def database_locked(r: Remediation) -> None:
    """Name the processes holding the database open, restart the backend by pid; others are left to a human."""
    db = Path(r.profile.db_path)
    files = [db, *(db.with_name(db.name + s) for s in ("-wal", "-shm", "-journal"))]
    r.observe("processes with the database open", lambda: [describe_pid(p) for p in holders(files)])
    restart_service(r, "backend")
    backend = service_process(r.profile, "backend")
    ours = {backend.pid, *(c.pid for c in backend.children(recursive=True))} if backend else set()
    others = [describe_pid(p) for p in holders(files) if p not in ours]
    if others:
        r.observe("still holding the database (end by pid after a human confirms)", lambda: others)


@fix_type(
    title="Database indexes stale or damaged",
    symptoms=[
        "Slow queries",
        "Index errors in integrity_check",
    ],
    causes=[
        "Index damage",
        "Collation changes",
    ],
    solutions=[
        "Verified online backup",
        "REINDEX",
        "integrity_check afterwards",
    ],
    unsafe_in_runbook=[],
)
def reindex(r: Remediation) -> None:
    """Verified backup, REINDEX, row checksums equal before and after."""
    maintain_database(r, "REINDEX")


if __name__ == "__main__":
    sys.exit(cli.main(__spec__.name))
