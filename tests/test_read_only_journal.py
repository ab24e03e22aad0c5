"""A read-only run creates, changes and removes nothing beside the database, in every journal mode.

SQLite's ``mode=ro`` on a WAL database that was closed cleanly creates its -shm (32 KiB) and -wal, and so
changes the directory; these tests watch the directory's mtime and every entry in it (name, size, mtime),
with and without the sidecars present, with a live writer, and for a rollback-journal database. The writers
are child processes stopped by pid when each test ends.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hostile_servers import assert_ran_cleanly, offline_profile, run_suite, write_targets

from observe.db import Database, DatabaseLocked, DatabaseUnavailable, connect_ro, integrity, table_counts
from observe.profile import resolve

ROWS = 50

# A writer that keeps its WAL connection open (and so the -wal and -shm) until its stdin closes.
WRITER = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("PRAGMA locking_mode=" + sys.argv[2])
conn.execute("PRAGMA journal_mode=WAL")
conn.execute("PRAGMA wal_autocheckpoint=0")  # committed rows stay in the -wal, where only a WAL reader sees them
conn.execute("INSERT INTO users (name) VALUES ('written by the live writer')")
print("written", flush=True)
sys.stdin.readline()
"""


def wal_database(path: Path) -> Path:
    """A WAL-mode database with ROWS users, closed cleanly: its last connection removed the -wal and -shm."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
    conn.executemany("INSERT INTO users (name) VALUES (?)", [(f"user {i}",) for i in range(ROWS)])
    conn.close()
    assert sorted(os.listdir(path.parent)) == [path.name]
    return path


def directory_state(directory: Path) -> tuple[int, dict[str, tuple[int, int]]]:
    """The directory's mtime and, for every entry, its size and mtime."""
    entries = {}
    for entry in os.scandir(directory):
        st = entry.stat(follow_symlinks=False)
        entries[entry.name] = (st.st_size, st.st_mtime_ns)
    return os.stat(directory).st_mtime_ns, entries


def database(tmp_path: Path, db_path: Path) -> Database:
    targets = write_targets(tmp_path / "db.toml", "db", {"db_path": str(db_path), "timeouts": {"lock": 0.3}})
    return Database(resolve(targets, "db", environ={}))


def every_probe(db: Database) -> dict:
    """What the database checks ask, through the Database object the fixture hands them."""
    try:
        return {
            "header": db.header(),
            "tables": db.tables(),
            "users": db.query("SELECT COUNT(*) FROM users")[0][0],
            "quick_check": db.scan("quick_check", 5.0).lines,
            "integrity_check": db.scan("integrity_check", 5.0).lines,
            "lock_holder": db.lock_holder(),
        }
    finally:
        db.close()


@pytest.fixture
def writer(tmp_path):
    """Start a writer child on a database (``writer(path, locking_mode)``); stopped by pid after the test."""
    children = []

    def start(path: Path, locking_mode: str = "NORMAL") -> subprocess.Popen:
        child = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(path), locking_mode],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        children.append(child)
        assert child.stdout.readline().strip() == "written"
        return child

    yield start
    for child in children:
        child.stdin.close()
        try:
            child.wait(timeout=5)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait(timeout=5)


def test_a_cleanly_closed_wal_database_is_read_without_creating_its_sidecars(tmp_path):
    (tmp_path / "app").mkdir()
    path = wal_database(tmp_path / "app" / "fossawork_v2.db")
    before = directory_state(path.parent)
    time.sleep(0.02)  # a file created now would get a later mtime than the one recorded
    seen = every_probe(database(tmp_path, path))
    assert (seen["users"], seen["quick_check"], seen["integrity_check"]) == (ROWS, ["ok"], ["ok"])
    assert directory_state(path.parent) == before, "the read-only probes changed the database's directory"


def test_a_wal_database_with_a_live_writer_is_read_through_its_sidecars_and_they_stay_as_they_were(tmp_path, writer):
    (tmp_path / "app").mkdir()
    path = wal_database(tmp_path / "app" / "fossawork_v2.db")
    writer(path)
    assert {"fossawork_v2.db-wal", "fossawork_v2.db-shm"} <= set(os.listdir(path.parent))
    before = directory_state(path.parent)
    time.sleep(0.02)
    seen = every_probe(database(tmp_path, path))
    # The writer's committed row lives only in the -wal: reading it proves the sidecars were used, not bypassed.
    assert (seen["users"], seen["quick_check"], seen["lock_holder"]) == (ROWS + 1, ["ok"], None)
    assert directory_state(path.parent) == before, "the read-only probes changed the database's directory"


def test_sidecars_left_by_a_crash_are_read_and_left_in_place(tmp_path, writer):
    (tmp_path / "live").mkdir()
    live = wal_database(tmp_path / "live" / "fossawork_v2.db")
    writer(live)
    crashed = tmp_path / "crashed"
    crashed.mkdir()
    for suffix in ("", "-wal", "-shm"):  # what a kill -9 of the writer leaves
        shutil.copy2(f"{live}{suffix}", crashed / f"fossawork_v2.db{suffix}")
    before = directory_state(crashed)
    time.sleep(0.02)
    seen = every_probe(database(tmp_path, crashed / "fossawork_v2.db"))
    assert seen["users"] == ROWS + 1
    assert directory_state(crashed) == before


def test_a_wal_with_frames_but_no_shm_is_refused_in_one_line_and_nothing_is_created(tmp_path, writer):
    (tmp_path / "live").mkdir()
    live = wal_database(tmp_path / "live" / "fossawork_v2.db")
    writer(live)
    crashed = tmp_path / "crashed"
    crashed.mkdir()
    for suffix in ("", "-wal"):
        shutil.copy2(f"{live}{suffix}", crashed / f"fossawork_v2.db{suffix}")
    before = directory_state(crashed)
    db = database(tmp_path, crashed / "fossawork_v2.db")
    with pytest.raises(DatabaseUnavailable, match="-shm is missing") as raised:
        db.tables()
    assert "\n" not in str(raised.value)
    assert directory_state(crashed) == before


def test_a_writer_in_exclusive_locking_mode_is_reported_as_locked_and_nothing_is_created(tmp_path, writer):
    (tmp_path / "app").mkdir()
    path = wal_database(tmp_path / "app" / "fossawork_v2.db")
    child = writer(path, "EXCLUSIVE")
    assert "fossawork_v2.db-shm" not in os.listdir(path.parent)  # exclusive locking mode keeps no -shm
    before = directory_state(path.parent)
    db = database(tmp_path, path)
    with pytest.raises(DatabaseLocked, match=f"locked by pid {child.pid}"):
        db.tables()
    assert directory_state(path.parent) == before


def test_a_snapshot_whose_file_a_writer_changed_is_read_again(tmp_path):
    (tmp_path / "app").mkdir()
    path = wal_database(tmp_path / "app" / "fossawork_v2.db")
    db = database(tmp_path, path)
    try:
        assert db.query("SELECT COUNT(*) FROM users") == [(ROWS,)]
        assert db.connect().immutable  # no sidecars, nobody holding it: a snapshot without locks
        # The application opens it meanwhile, writes and checkpoints into the main file, and closes again.
        conn = sqlite3.connect(path, isolation_level=None)
        conn.executemany("INSERT INTO users (name) VALUES (?)", [("late",)] * 5)
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.close()
        assert db.query("SELECT COUNT(*) FROM users") == [(ROWS + 5,)]
    finally:
        db.close()


def test_a_rollback_journal_database_is_read_without_a_trace(tmp_path):
    (tmp_path / "app").mkdir()
    path = tmp_path / "app" / "fossawork_v2.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
        conn.executemany("INSERT INTO users (name) VALUES (?)", [(f"user {i}",) for i in range(ROWS)])
    conn.close()
    before = directory_state(path.parent)
    time.sleep(0.02)
    assert every_probe(database(tmp_path, path))["users"] == ROWS
    assert directory_state(path.parent) == before


def test_the_fix_scripts_evidence_reads_a_wal_database_without_a_trace(tmp_path):
    (tmp_path / "app").mkdir()
    path = wal_database(tmp_path / "app" / "fossawork_v2.db")
    before = directory_state(path.parent)
    time.sleep(0.02)
    assert integrity(path) == ["ok"]
    assert table_counts(path) == {"users": ROWS}
    connect_ro(path).close()
    assert directory_state(path.parent) == before


@pytest.mark.parametrize("sidecars", ["none", "live-writer"])
def test_the_database_checks_leave_a_wal_database_directory_as_it_was(tmp_path, writer, sidecars):
    (tmp_path / "app").mkdir()
    path = wal_database(tmp_path / "app" / "fossawork_v2.db")
    if sidecars == "live-writer":
        writer(path)
    before = directory_state(path.parent)
    targets = write_targets(
        tmp_path / "t.toml", "wal", offline_profile(tmp_path, db_path=str(path), db_tables=["users"])
    )
    run = run_suite(targets, "wal", "-m", "database")
    assert_ran_cleanly(run)
    assert run.outcome("test_database_passes_quick_check") == "passed", run.output[-3000:]
    assert directory_state(path.parent) == before, "the database checks changed the database's directory"
