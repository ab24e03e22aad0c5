"""Database actions: verified online backups, maintenance that proves every row survived, recovery.

Every change to the database comes after a backup made with SQLite's online
backup API that passes ``integrity_check``; originals are moved to
``<backup_dir>/quarantine/`` instead of being deleted.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
from collections.abc import Callable
from contextlib import closing
from pathlib import Path

from observe.db import connect_ro, integrity, row_checksums, sidecars, table_counts, user_tables
from remediation.actions.core import Remediation, StepFailed, stamp, unique_path
from remediation.actions.services import start_service, stop_service


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
        r.fail(f"{db} fails integrity_check; run recover-corrupted-database instead of {sql}")
    before = r.observe("row checksums before", lambda: row_checksums(db))
    backup_database(r)
    r.step(f"run {sql} on {db}", _write(r, sql))
    if r.execute:
        after = row_checksums(db)
        if after != before:
            r.fail(f"row checksums changed by {sql}: before {before}, after {after}; the verified backup is intact")
        r.observe("row checksums after (equal to before)", lambda: after)


# -- corruption recovery ----------------------------------------------------


def _recover_cli(work: Path, dest: Path) -> str:
    """``sqlite3 work .recover | sqlite3 dest`` (rows it cannot place land in lost_and_found)."""
    dump = subprocess.run(["sqlite3", str(work), ".recover"], capture_output=True, timeout=600, check=True)
    subprocess.run(["sqlite3", str(dest)], input=dump.stdout, capture_output=True, timeout=600, check=True)
    return "sqlite3 .recover"


def _recover_iterdump(work: Path, dest: Path) -> str:
    """Replay Python's iterdump(); where it stops at a damaged table, copy the rest table by table.

    iterdump() raises at the first unreadable page, which would drop every later table; the top-up copies
    each table's readable rows (up to its first bad page) with INSERT OR IGNORE.
    """
    skipped = 0
    with closing(sqlite3.connect(work)) as src, closing(sqlite3.connect(dest, isolation_level=None)) as out:
        try:
            for statement in src.iterdump():
                try:
                    out.execute(statement)
                except sqlite3.Error:
                    skipped += 1
        except sqlite3.Error:
            skipped += 1
        if out.in_transaction:
            out.execute("COMMIT")
        if skipped:
            _top_up(src, out)
    return f"python iterdump ({skipped} statements skipped, readable rows copied table by table)"


def _top_up(src: sqlite3.Connection, out: sqlite3.Connection) -> None:
    schema = src.execute("SELECT type, name, sql FROM sqlite_master WHERE sql IS NOT NULL AND name NOT LIKE 'sqlite_%'")
    for kind, name, sql in sorted(schema.fetchall(), key=lambda row: row[0] != "table"):
        try:
            out.execute(sql)
        except sqlite3.Error:
            pass  # already created by iterdump
        if kind != "table":
            continue
        out.execute("BEGIN")
        try:
            for row in src.execute(f'SELECT * FROM "{name}"'):
                out.execute(f'INSERT OR IGNORE INTO "{name}" VALUES ({", ".join("?" * len(row))})', row)
        except sqlite3.Error:
            pass  # the rest of this table is on damaged pages
        out.execute("COMMIT")


def _newest_verified_backup(backup_dir: Path, stem: str, dest: Path) -> str:
    """Copy the newest backup of this database that passes integrity_check."""
    for candidate in sorted(backup_dir.glob(f"{stem}-*.db"), key=lambda p: p.stat().st_mtime, reverse=True):
        if integrity(candidate) == ["ok"]:
            online_backup(candidate, dest)
            return f"newest verified backup {candidate}"
    raise StepFailed(f"no backup of {stem} in {backup_dir} passes integrity_check")


def recover_database(r: Remediation) -> None:
    """The runbook's corruption recovery without its rm: quarantine, recover a copy, verify, install, count rows."""
    db, backups = Path(r.profile.db_path), Path(r.profile.backup_dir)
    run_stamp = stamp()
    quarantine = unique_path(backups / "quarantine", run_stamp)
    work_dir = unique_path(backups / "recovery", run_stamp)
    present = [p for p in sidecars(db) if p.exists()]
    r.observe(f"integrity_check of {db}", lambda: integrity(db)[:5])
    stop_service(r, "backend")

    def do_quarantine() -> str:
        quarantine.mkdir(parents=True, mode=0o700)
        for path in present:
            shutil.move(path, quarantine / path.name)
        return f"moved {', '.join(p.name for p in present)} to {quarantine}"

    r.step(
        f"move the original {db} (and its -wal/-shm/-journal) into {quarantine}/ (kept, never deleted)", do_quarantine
    )
    work, recovered = work_dir / db.name, work_dir / "recovered.db"

    def do_copy() -> str:
        # Recovery reads a copy: sqlite3 may roll back a hot journal, which must not alter the quarantined evidence.
        work_dir.mkdir(parents=True, mode=0o700)
        for path in present:
            shutil.copy2(quarantine / path.name, work_dir / path.name)
        return str(work)

    r.step(f"copy the quarantined files into {work_dir}/ to recover from", do_copy)
    before = r.observe("rows per table in the damaged file", lambda: table_counts(work)) if r.execute else {}
    strategies = [("recover with `sqlite3 .recover`", _recover_cli)] if shutil.which("sqlite3") else []
    strategies += [("recover with Python iterdump()", _recover_iterdump)]
    strategies += [("restore the newest verified backup", lambda w, d: _newest_verified_backup(backups, db.stem, d))]
    source = None
    for label, strategy in strategies:
        if not r.execute:
            r.step(f"{label} into {recovered}, then verify it (integrity_check)", lambda: None)
            continue
        try:
            if recovered.exists():
                shutil.move(recovered, unique_path(work_dir, "failed-attempt", ".db"))
            source = r.step(f"{label} into {recovered} and verify it", lambda s=strategy: _attempt(s, work, recovered))
            break
        except StepFailed:
            continue
    if r.execute and source is None:
        r.step(
            f"put the original back from {quarantine} (nothing could be recovered)",
            lambda: _restore(quarantine, present),
        )
        start_service(r, "backend")
        r.fail("no recovery strategy produced a verified database; the original is back in place, escalate")

    def do_install() -> str:
        tmp = unique_path(db.parent, f".{db.name}.recovered")
        shutil.copy2(recovered, tmp)
        os.chmod(tmp, (quarantine / db.name).stat().st_mode & 0o777 if (quarantine / db.name).exists() else 0o600)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, db)
        return str(db)

    r.step(f"install the verified recovered database at {db} (atomic rename)", do_install)
    if r.execute:
        after = table_counts(db)
        r.observe(
            "rows per table before -> after (rows that could not be recovered)", lambda: _row_report(before, after)
        )
    start_service(r, "backend")


def _attempt(strategy: Callable[[Path, Path], str], work: Path, recovered: Path) -> str:
    how = strategy(work, recovered)
    verify(recovered)
    return how


def _restore(quarantine: Path, moved: list[Path]) -> str:
    for path in moved:
        shutil.move(quarantine / path.name, path)
    return "original restored"


def _row_report(before: dict, after: dict) -> dict:
    """Per table: before, after, and lost (before - after) or 'unknown' when the damaged table was unreadable."""
    out = {}
    for name in sorted(set(before) | set(after)):
        b, a = before.get(name, "absent"), after.get(name, "absent")
        lost = b - a if isinstance(b, int) and isinstance(a, int) else "unknown"
        out[name] = {"before": b, "after": a, "lost": lost}
    return out
