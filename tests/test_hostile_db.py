"""A database path that is not a healthy SQLite file gives a failed check naming the cause, never a traceback.

The suite runs as root, so unreadable files are told by their owner bits (``Database.owner_can``), not by
``os.access``. Every probe is read-only: no case may leave a journal, a WAL or a new file behind.
"""

from __future__ import annotations

import os
import socket
import sqlite3
from pathlib import Path

import pytest
from hostile_servers import assert_ran_cleanly, offline_profile, run_suite, write_targets

from observe.db import BudgetExceeded, Database, DatabaseUnavailable
from observe.profile import resolve


def _healthy(path: Path) -> bytes:
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
        conn.executemany("INSERT INTO users (name) VALUES (?)", [("x" * 500,)] * 200)
    conn.close()
    return path.read_bytes()


def make_bad_database(tmp: Path, kind: str) -> Path:
    """A database path of one hostile ``kind``, inside ``tmp``."""
    path = tmp / f"{kind}.db"
    if kind == "directory":
        path.mkdir()
    elif kind == "text":
        path.write_text("DATABASE_URL=sqlite:///fossawork_v2.db\n" * 50)
    elif kind == "zero-byte":
        path.write_bytes(b"")
    elif kind == "truncated":
        data = _healthy(tmp / "source.db")
        (tmp / "source.db").unlink()
        path.write_bytes(data[: len(data) // 3])
    elif kind == "mode-000":
        _healthy(path)
        path.chmod(0)
    elif kind == "dangling-symlink":
        path.symlink_to(tmp / "nowhere.db")
    elif kind == "fifo":
        os.mkfifo(path)  # SQLite would wait forever opening it for a writer
    elif kind == "socket":
        with socket.socket(socket.AF_UNIX) as sock:
            sock.bind(str(path))
    elif kind == "device":
        path.symlink_to("/dev/zero")  # never ends
    return path  # "missing": nothing at all


KINDS = ["directory", "text", "zero-byte", "truncated", "mode-000", "dangling-symlink", "missing"]
KINDS += ["fifo", "socket", "device"]


def _listing(directory: Path) -> dict[str, tuple[int, int, int]]:
    return {p.name: (p.lstat().st_size, p.lstat().st_mode, p.lstat().st_mtime_ns) for p in directory.iterdir()}


@pytest.mark.parametrize("kind", KINDS)
def test_every_database_probe_raises_only_database_unavailable(tmp_path, kind):
    path = make_bad_database(tmp_path, kind)
    targets = write_targets(tmp_path / "t.toml", "bad", {"db_path": str(path), "timeouts": {"lock": 0.2}})
    before = _listing(tmp_path)
    database = Database(resolve(targets, "bad", environ={}))
    probes = {
        "file": database.file,
        "owner_can": lambda: database.owner_can(0o400),
        "describe_mode": database.describe_mode,
        "header": database.header,
        "tables": database.tables,
        "quick_check": lambda: database.scan("quick_check", 1.0),
        "count": lambda: database.query("SELECT COUNT(*) FROM users"),
        "lock_holder": database.lock_holder,
    }
    for name, probe in probes.items():
        try:
            probe()
        except (DatabaseUnavailable, BudgetExceeded) as exc:
            assert str(exc) and "\n" not in str(exc), (name, str(exc))
    database.close()
    assert _listing(tmp_path) == before, "a read-only probe created or changed a file"


CAUSES = {
    "directory": ("test_database_file_is_readable", "a directory"),
    "text": ("test_database_is_a_readable_sqlite_database", "not a SQLite database"),
    "zero-byte": ("test_database_file_is_not_empty", "0 bytes"),
    "truncated": ("test_database_is_a_readable_sqlite_database", "malformed"),
    "mode-000": ("test_database_file_is_readable", "----------"),
    "missing": ("test_database_file_exists", "no file at"),
    "fifo": ("test_database_file_is_readable", "a FIFO"),
    "socket": ("test_database_file_is_readable", "a socket"),
    "device": ("test_database_file_is_readable", "a character device"),
}


@pytest.mark.parametrize("kind", list(CAUSES))
def test_a_run_against_a_bad_database_fails_the_check_that_names_the_cause(tmp_path, kind):
    path = make_bad_database(tmp_path, kind)
    listing = _listing(tmp_path)
    targets = write_targets(tmp_path / "t.toml", "bad", offline_profile(tmp_path, db_path=str(path)))
    run = run_suite(targets, "bad", "-m", "database")
    assert_ran_cleanly(run)
    check, cause = CAUSES[kind]
    outcome, message = run.cases[check]
    assert outcome == "failed" and cause in message and str(path) in message, (check, outcome, message)
    if kind == "missing":
        assert not os.path.lexists(path), "the run created the missing database"
    after = {k: v for k, v in _listing(tmp_path).items() if k not in ("t.toml", "t.junit.xml")}
    assert after == listing, "the run changed the database directory"
