"""Database actions: verified online backups, and maintenance that proves every row survived.

Every change to the database comes after a backup made with SQLite's online
backup API that passes ``integrity_check`` (recovery of a damaged file: ``recovery``).
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable
from contextlib import closing
from pathlib import Path

from observe.db import connect_ro, integrity, row_checksums, user_tables
from remediation.actions.core import Remediation, StepFailed, stamp, unique_path


def online_backup(src: Path, dest: Path, timeout: float = 5.0) -> None:
    """Copy ``src`` to a new file ``dest`` with the online backup API (consistent while the backend writes)."""
    with closing(connect_ro(src, timeout)) as s, closing(sqlite3.connect(dest)) as d:
        s.backup(d)
    os.chmod(dest, 0o600)


def verify(path: Path) -> None:
    """Raise unless ``path`` passes integrity_check and has at least one table."""
    lines = integrity(path)
    if lines != ["ok"]:
        raise StepFailed(f"{path} fails integrity_check: {'; '.join(lines[:3])}")
    with closing(connect_ro(path)) as conn:
        if not user_tables(conn):
            raise StepFailed(f"{path} has no tables")


def backup_database(r: Remediation) -> Path | None:
    """Verified online backup of the target's database into backup_dir; the step every change depends on."""
    src, dest_dir = Path(r.profile.db_path), Path(r.profile.backup_dir)

    def do() -> Path:
        dest_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        dest = unique_path(dest_dir, f"{src.stem}-{stamp()}", ".db")
        online_backup(src, dest, r.profile.timeouts.lock + 5)
        verify(dest)
        return dest

    return r.step(f"back up {src} into {dest_dir} (SQLite online backup API) and verify it (integrity_check)", do)


def _write(r: Remediation, sql: str) -> Callable[[], str]:
    def do() -> str:
        path = Path(r.profile.db_path)
        before = path.stat().st_size
        with closing(sqlite3.connect(path, timeout=r.profile.timeouts.lock + 5, isolation_level=None)) as conn:
            for statement in sql.split(";"):
                if statement.strip():
                    conn.execute(statement)
        return f"{before} -> {path.stat().st_size} bytes"

    return do


def maintain_database(r: Remediation, sql: str) -> None:
    """Run VACUUM / REINDEX / ANALYZE only after a verified backup, and prove every row survived."""
    db = Path(r.profile.db_path)
    lines = r.observe(f"integrity_check of {db}", lambda: integrity(db))
    if lines != ["ok"]:
        r.refuse(f"{db} fails integrity_check; run recover-corrupted-database instead of {sql}")
    before = r.observe("row checksums before", lambda: row_checksums(db))
    backup_database(r)
    r.step(f"run {sql} on {db}", _write(r, sql))
    if r.execute:
        after = row_checksums(db)
        if after != before:
            r.fail(f"row checksums changed by {sql}: before {before}, after {after}; the verified backup is intact")
        r.observe("row checksums after (equal to before)", lambda: after)
