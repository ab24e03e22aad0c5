"""The observing fixtures: read-only, bounded, and costing what they read."""

import json
import os
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest

from observe.db import Database, DatabaseUnavailable
from observe.logs import Logs


def _profile(tmp_path, **overrides):
    logs = SimpleNamespace(errors=["errors/*.jsonl"], tail_bytes=8 << 20, all=["**/*.jsonl"])
    values = dict(
        db_path=str(tmp_path / "missing.db"),
        log_dir=str(tmp_path),
        log_timezone="UTC",
        logs=logs,
        timeouts=SimpleNamespace(lock=0.2),
    )
    values.update(overrides)
    return SimpleNamespace(**values)


def test_the_db_fixture_never_creates_a_missing_database(tmp_path):
    database = Database(_profile(tmp_path))
    with pytest.raises(DatabaseUnavailable, match="does not exist"):
        database.tables()
    assert not (tmp_path / "missing.db").exists()
    assert os.listdir(tmp_path) == []


def test_the_db_fixture_cannot_write(tmp_path):
    path = tmp_path / "app.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE work_orders (id INTEGER PRIMARY KEY)")
    conn.commit()
    conn.close()
    before = path.read_bytes()
    database = Database(_profile(tmp_path, db_path=str(path)))
    assert database.tables() == ["work_orders"]
    for statement in ("INSERT INTO work_orders VALUES (1)", "CREATE TABLE x (y)", "PRAGMA user_version = 7"):
        with pytest.raises(DatabaseUnavailable, match="readonly"):
            database.query(statement)
    database.close()
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["app.db"]  # no journal, no -wal, no -shm


def _write_big_log(path, size):
    """A JSONL error log of about ``size`` bytes: old entries, then 30 in the last hour at the end."""
    old = (datetime.now(UTC) - timedelta(days=3)).isoformat()
    entry = {"timestamp": old, "level": "ERROR", "message": "old failure " + "x" * 60}
    line = (json.dumps(entry) + "\n").encode()
    block = line * (4 * 1024 * 1024 // len(line))
    with open(path, "wb") as handle:
        for _ in range(size // len(block)):
            handle.write(block)
        now = datetime.now(UTC)
        for i in range(30):
            stamp = (now - timedelta(minutes=30 - i)).isoformat()
            handle.write(b'{"timestamp": "%s", "level": "ERROR", "message": "recent %d"}\n' % (stamp.encode(), i))


def test_the_log_reader_reads_the_last_hour_of_a_200_mb_log_in_well_under_a_second(tmp_path):
    (tmp_path / "errors").mkdir()
    log = tmp_path / "errors" / "backend-errors.jsonl"
    _write_big_log(log, 200 * 1024 * 1024)
    # A child process, so its peak memory is the reader's alone.
    code = f"""
import resource, sys, time
sys.path.insert(0, {str(os.getcwd())!r})
from datetime import timedelta
from types import SimpleNamespace
from observe.logs import Logs
profile = SimpleNamespace(log_dir={str(tmp_path)!r}, log_timezone="UTC",
                          logs=SimpleNamespace(errors=["errors/*.jsonl"], tail_bytes=8 << 20))
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
start = time.monotonic()
tail = Logs(profile).since("errors", timedelta(hours=1))
elapsed = time.monotonic() - start
grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
print(len(tail.entries), tail.bytes_read, elapsed, grown)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    entries, bytes_read, elapsed, grown_kib = int(out[0]), int(out[1]), float(out[2]), int(out[3])
    assert entries == 30
    assert bytes_read < 1024 * 1024  # stopped at the window's start, not at the file's
    assert elapsed < 0.5
    assert grown_kib < 20 * 1024


def test_the_log_reader_counts_malformed_lines_instead_of_raising(tmp_path):
    (tmp_path / "errors").mkdir()
    now = datetime.now(UTC).isoformat()
    (tmp_path / "errors" / "e.jsonl").write_bytes(
        b'\x00\xff garbage\n[1, 2]\n"just a string"\n{not json\n'
        + b'{"timestamp": "%s", "level": "ERROR", "message": "real"}\n' % now.encode()
        + b'{"level": "ERROR", "message": "no time"}\n'
    )
    tail = Logs(_profile(tmp_path)).since("errors", timedelta(hours=1))
    assert [e.message for e in tail.entries] == ["real"]
    assert tail.malformed == 4
    assert tail.undated == 1
