"""Logs full of garbage are counted, not raised: the reader returns counts and the checks say what they saw."""

from __future__ import annotations

import gzip
import json
import os
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from hostile_servers import assert_ran_cleanly, offline_profile, run_suite, write_targets

from observe.logs import Logs
from observe.profile import resolve

NOW = datetime.now(UTC)
WINDOW = timedelta(hours=1)


def _json(**fields) -> str:
    return json.dumps({"level": "ERROR", **fields})


def hostile_log_dir(root: Path) -> Path:
    """A log tree in the runbook layout whose every file is broken in a different way."""
    for sub in ("backend", "errors", "automation"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    # Binary garbage, then six real errors: the count must see them through the garbage.
    errors = "".join(_json(timestamp=NOW.isoformat(), message="DatabaseError: disk I/O error") + "\n" for _ in range(6))
    (root / "backend" / "backend-errors-latest.jsonl").write_bytes(os.urandom(200_000) + b"\n" + errors.encode())
    (root / "backend" / "invalid-utf8.jsonl").write_bytes(
        (b'{"timestamp": "' + NOW.isoformat().encode() + b'", "level": "ERROR", "message": "caf\xe9 \xff\xfe"}\n') * 5
    )
    long_line = _json(timestamp=NOW.isoformat(), message="x" * (10 * 1024 * 1024))
    (root / "errors" / "long-lines.jsonl").write_text(long_line + "\n" + _json(message="after the long line") + "\n")
    (root / "errors" / "not-objects.jsonl").write_text('[1, 2]\n"text"\n42\nnull\n{"timestamp": 7, "level": ["x"]}\n')
    zones = [
        _json(timestamp=NOW.isoformat(), message="utc"),
        _json(timestamp=NOW.astimezone(timezone(timedelta(hours=-7))).isoformat(), message="other zone"),
        _json(timestamp=NOW.replace(tzinfo=None).isoformat(), message="no zone"),
        _json(timestamp=(NOW + timedelta(days=3)).isoformat(), message="future"),
        _json(message="missing"),
        _json(timestamp="last tuesday", message="unparseable"),
        _json(timestamp="0001-01-01T00:00:00+01:00", message="before year 1 in UTC"),
    ]
    (root / "errors" / "zones.jsonl").write_text("\n".join(zones) + "\n")
    with gzip.open(root / "errors" / "errors.jsonl.1.gz", "wt") as handle:
        handle.write(_json(timestamp=NOW.isoformat(), message="rotated") + "\n")
    (root / "errors" / "errors.jsonl.2.gz").write_bytes(b"\x1f\x8b not really gzip")
    (root / "automation" / "run.jsonl").write_bytes(b"\x00" * 4096 + b"\n" + _json(type="automation").encode())
    return root


@pytest.fixture
def hostile_logs(tmp_path) -> Logs:
    root = hostile_log_dir(tmp_path / "logs")
    logs = {"errors": ["errors/*"], "all": ["**/*"], "tail_bytes": 16 * 1024 * 1024}
    targets = write_targets(tmp_path / "t.toml", "t", {"log_dir": str(root), "logs": logs})
    return Logs(resolve(targets, "t", environ={}))


@pytest.mark.parametrize("category", ["backend_errors", "errors", "automation", "startup", "all"])
def test_the_reader_counts_every_hostile_log_without_raising(hostile_logs, category):
    tail = hostile_logs.since(category, WINDOW)
    total = sum(p.stat().st_size for p in tail.files)
    assert tail.bytes_read <= total
    assert "\n" not in tail.evidence()


def test_zones_future_and_missing_timestamps_are_counted_apart(hostile_logs):
    tail = hostile_logs.since("errors", WINDOW)
    messages = sorted(e.message for e in tail.entries)
    # UTC, another zone and no zone (taken as the profile's UTC) are all "now"; the rest are set aside.
    assert messages == ["no zone", "other zone", "utc"]
    assert tail.future == 1
    # missing, unparseable, before year 1, the object with a numeric timestamp, the one after the long line.
    assert tail.undated == 5
    assert tail.malformed >= 5  # four JSON values that are not objects, and the 10 MB line
    assert "skipped rotated errors.jsonl.1.gz" in tail.evidence()
    assert "skipped rotated errors.jsonl.2.gz" in tail.evidence()


def test_invalid_utf8_is_read_with_replacement_characters(hostile_logs):
    tail = hostile_logs.since("startup", WINDOW)
    assert [e.message for e in tail.entries if "caf" in e.message] == ["caf\ufffd \ufffd\ufffd"] * 5


def test_a_dangling_log_directory_is_a_problem_not_an_error(tmp_path):
    (tmp_path / "logs").symlink_to(tmp_path / "gone")
    targets = write_targets(tmp_path / "t.toml", "t", {"log_dir": str(tmp_path / "logs")})
    tail = Logs(resolve(targets, "t", environ={})).since("errors", WINDOW)
    assert (tail.files, tail.entries) == ([], [])
    assert "dangling symlink" in tail.evidence()


def test_an_absolute_glob_is_a_problem_not_an_error(tmp_path):
    targets = write_targets(tmp_path / "t.toml", "t", {"log_dir": str(tmp_path), "logs": {"errors": ["/var/*.log"]}})
    files, problems = Logs(resolve(targets, "t", environ={})).files("errors")
    assert files == [] and "not a pattern relative" in problems[0]


def test_a_run_against_hostile_logs_goes_on_and_names_what_it_read(tmp_path):
    root = hostile_log_dir(tmp_path / "logs")
    targets = write_targets(tmp_path / "t.toml", "t", offline_profile(tmp_path, log_dir=str(root)))
    run = run_suite(targets, "t", "-m", "backend or automation", "-k", "log")
    assert_ran_cleanly(run)
    assert run.outcome("test_backend_error_log_exists") == "passed"
    # The six errors behind 200 KB of random bytes are counted, and the evidence says how much was garbage.
    outcome, message = run.cases["test_backend_error_log_has_few_recent_errors"]
    assert outcome == "failed" and "observed 6 errors" in message and "malformed line(s)" in message, message
    assert run.outcome("test_backend_error_log_has_no_critical_error_pattern[DatabaseError]") == "failed"
    assert run.outcome("test_backend_error_log_has_no_critical_error_pattern[MemoryError]") == "passed"
    outcome, message = run.cases["test_error_logs_hold_few_errors_in_the_last_hour"]
    assert outcome == "passed", message


def test_a_run_against_a_dangling_log_directory_names_the_symlink(tmp_path):
    (tmp_path / "logs").symlink_to(tmp_path / "gone")
    targets = write_targets(tmp_path / "t.toml", "t", offline_profile(tmp_path, log_dir=str(tmp_path / "logs")))
    run = run_suite(targets, "t", "-m", "backend or automation or performance", "-k", "log")
    assert_ran_cleanly(run)
    outcome, message = run.cases["test_backend_error_log_exists"]
    assert outcome == "failed" and "dangling symlink" in message, message
    assert not (tmp_path / "gone").exists()
