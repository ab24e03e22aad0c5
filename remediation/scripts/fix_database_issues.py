"""fix-database-issues: maintenance of the SQLite file, each change after a verified online backup."""

from __future__ import annotations

import sys
from pathlib import Path

from remediation import safety
from remediation.safety import Remediation


def vacuum(r: Remediation) -> None:
    """Verified backup, VACUUM, row checksums equal before and after."""
    safety.maintain_database(r, "VACUUM")


def permissions(r: Remediation) -> None:
    """chmod the database, .env and credentials: owner read/write, no group/other bits (chown is a human call)."""
    safety.fix_permissions(r, safety.secret_files(r.profile))


def database_locked(r: Remediation) -> None:
    """Name the processes holding the database open, restart the backend by pid; others are left to a human."""
    db = Path(r.profile.db_path)
    files = [db, *(db.with_name(db.name + s) for s in ("-wal", "-shm", "-journal"))]
    r.observe("processes with the database open", lambda: [safety._describe_pid(p) for p in safety.open_by(files)])
    safety.restart_service(r, "backend")
    backend = safety.service_process(r.profile, "backend")
    ours = {backend.pid, *(c.pid for c in backend.children(recursive=True))} if backend else set()
    others = [safety._describe_pid(p) for p in safety.open_by(files) if p not in ours]
    if others:
        r.observe("still holding the database (end by pid after a human confirms)", lambda: others)


def reindex(r: Remediation) -> None:
    """Verified backup, REINDEX, row checksums equal before and after."""
    safety.maintain_database(r, "REINDEX")


FIXES = {"vacuum": vacuum, "permissions": permissions, "database_locked": database_locked, "reindex": reindex}

if __name__ == "__main__":
    sys.exit(safety.main("fix-database-issues", FIXES))
