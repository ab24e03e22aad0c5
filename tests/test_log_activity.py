"""A log the application always writes that holds nothing in its window is reported as such, by name, and the
checks that count errors in it skip naming that report instead of passing on nothing."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hostile_servers import assert_ran_cleanly, offline_profile, run_suite, write_targets

from observe.logs import Logs
from observe.profile import ProfileError, resolve

SILENT = "test_active_logs_have_entries_in_their_window"
REPORTED = f"(reported by {SILENT})"
# FossaWork V2's layout: its general log is the backend error log, part of the error logs and the startup log.
V2_LOGS = {
    "backend_errors": ["backend/backend-general-*.jsonl"],
    "errors": ["backend/backend-general-*.jsonl", "errors/*.jsonl"],
    "startup": ["backend/backend-general-*.jsonl"],
    "active": ["backend_errors", "errors", "startup"],
}


def _text(when: datetime, message: str) -> str:
    """One line of FossaWork V2's text log format, in UTC."""
    return f"{when:%Y-%m-%d %H:%M:%S} | INFO     | fossawork.api        | log_api_request:341  | {message}\n"


def _v2_logs(root: Path, general: str) -> Path:
    """A v2 log tree: the general log holding ``general``, the errors log empty as on a healthy system."""
    (root / "backend").mkdir(parents=True)
    (root / "errors").mkdir()
    (root / "backend" / "backend-general-2026-11-30.jsonl").write_text(general)
    (root / "errors" / "backend-errors-2026-11-30.jsonl").write_text("")
    return root


def _logs(tmp_path: Path, general: str) -> Logs:
    root = _v2_logs(tmp_path / "logs", general)
    targets = write_targets(tmp_path / "t.toml", "t", {"log_dir": str(root), "logs": V2_LOGS})
    return Logs(resolve(targets, "t", environ={}))


def test_activity_names_the_newest_entry_in_the_window(tmp_path):
    now = datetime.now(UTC)
    general = _text(now - timedelta(hours=3), "old") + _text(now - timedelta(minutes=2), "API GET /health -> 200")
    activity = _logs(tmp_path, general).activity("errors", timedelta(hours=1))
    assert not activity.silent
    assert activity.newest.message == "API GET /health -> 200"
    assert "newest entry at" in activity.evidence(tmp_path / "logs")


def test_activity_of_a_log_with_only_old_entries_is_silent_and_says_when_it_last_heard(tmp_path):
    old = datetime.now(UTC) - timedelta(hours=3)
    activity = _logs(tmp_path, _text(old, "Application startup complete")).activity("errors", timedelta(hours=1))
    assert activity.silent
    evidence = activity.evidence(tmp_path / "logs")
    assert f"newest entry at {old:%Y-%m-%d %H:%M:%S} UTC, before the window" in evidence
    assert (
        "backend/backend-general-2026-11-30.jsonl" in evidence
        and "errors/backend-errors-2026-11-30.jsonl 0 B" in evidence
    )


def test_activity_of_an_empty_or_missing_log_is_silent_and_names_the_globs(tmp_path):
    logs = _logs(tmp_path, "")
    empty = logs.activity("startup", timedelta(hours=1))
    assert empty.silent and "backend/backend-general-2026-11-30.jsonl 0 B" in empty.evidence(logs.root)
    assert "no dated entry at all" in empty.evidence(logs.root)
    (logs.root / "backend" / "backend-general-2026-11-30.jsonl").unlink()
    missing = logs.activity("startup", timedelta(hours=1))
    assert missing.silent and "no file matches backend/backend-general-*.jsonl" in missing.evidence(logs.root)


def _suite(tmp_path: Path, general: str, logs: dict, *args: str, **opts):
    root = _v2_logs(tmp_path / "logs", general)
    values = offline_profile(tmp_path, log_dir=str(root), logs=logs)
    return run_suite(write_targets(tmp_path / "t.toml", "t", values), "t", *args, **opts)


def test_a_silent_active_log_fails_its_check_and_the_error_checks_skip_naming_it(tmp_path):
    old = datetime.now(UTC) - timedelta(hours=3)
    run = _suite(tmp_path, _text(old, "Application startup complete"), V2_LOGS, "-m", "backend", "-k", "log")
    assert_ran_cleanly(run)
    outcome, message = run.cases[SILENT]
    assert outcome == "failed", message
    assert "observed no entry in the last 60 min in backend_errors, startup (" in message
    assert "backend/backend-general-2026-11-30.jsonl" in message and "before the window" in message
    for check in ("test_backend_error_log_has_few_recent_errors", "test_error_logs_hold_few_errors_in_the_last_hour"):
        outcome, message = run.cases[check]
        assert outcome == "skipped" and REPORTED in message, (check, message)
    assert all(o == "skipped" for o, _ in run.named("test_backend_error_log_has_no_critical_error_pattern").values())


def test_a_live_active_log_passes_and_the_error_checks_observe_it(tmp_path):
    recent = datetime.now(UTC) - timedelta(minutes=5)
    run = _suite(tmp_path, _text(recent, "API GET /health -> 200"), V2_LOGS, "-m", "backend", "-k", "log")
    assert_ran_cleanly(run)
    assert run.outcome(SILENT) == "passed"
    assert run.outcome("test_backend_error_log_has_few_recent_errors") == "passed"
    assert run.outcome("test_error_logs_hold_few_errors_in_the_last_hour") == "passed"


def test_without_active_groups_empty_error_logs_pass_and_the_silence_check_says_why_it_is_skipped(tmp_path):
    # The runbook's layout: every log is error-only, so an empty one is a healthy one.
    run = _suite(tmp_path, "", {"backend_errors": ["backend/backend-general-*.jsonl"]}, "-m", "backend", "-k", "log")
    assert_ran_cleanly(run)
    outcome, message = run.cases[SILENT]
    assert outcome == "skipped" and "no log group is declared active" in message
    assert run.outcome("test_backend_error_log_has_few_recent_errors") == "passed"
    assert run.outcome("test_error_logs_hold_few_errors_in_the_last_hour") == "passed"


def test_a_p2_run_on_a_silent_log_names_the_silence_as_the_root_cause(tmp_path):
    old = datetime.now(UTC) - timedelta(hours=3)
    reports = tmp_path / "reports"
    opts = ("-p", "no:cacheprovider", "-q", "-rfEs", f"--report-dir={reports}")
    run = _suite(tmp_path, _text(old, "Application startup complete"), V2_LOGS, "-m", "p2", "-k", "log", opts=opts)
    causes = json.loads((reports / "latest.json").read_text())["root_causes"]
    assert [c["id"] for c in causes] == [f"health/test_backend.py::{SILENT}"], run.output[-3000:]
    assert causes[0]["severity"] == "p3"
    assert any("test_backend_error_log_has_no_critical_error_pattern" in c for c in causes[0]["explains"])


def test_an_active_group_that_is_not_a_group_of_logs_is_refused_in_one_line(tmp_path):
    targets = write_targets(tmp_path / "t.toml", "t", {"logs": {"active": ["backend_errors", "general"]}})
    with pytest.raises(ProfileError, match=r"logs\.active.*expected a list of 'backend_errors'.*got \["):
        resolve(targets, "t", environ={})
