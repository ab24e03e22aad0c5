"""remediation.notify.alerts: one page per new problem, one resolve per recovery, bounded cost, never a failed run."""

import json
import subprocess
import sys
import time

import pytest
from hostile_servers import HostileServer
from production_support import receiver, silent_receiver, suite  # noqa: F401 (fixtures)

from remediation.notify import alerts


def test_a_persisting_failure_pages_once_and_its_recovery_resolves(suite, receiver):  # noqa: F811
    suite.fail("db")
    first = suite.run(f"--alert-webhook={receiver.url}")
    first.assert_outcomes(passed=3, failed=1)
    assert len(receiver.posts) == 1
    trigger = receiver.posts[0]
    key = alerts.dedup_key("prod", "test_checks.py::test_db_answers")
    assert trigger["routing_key"] == "routing-key-0123456789"
    assert trigger["event_action"] == "trigger"
    assert trigger["dedup_key"] == key
    payload = trigger["payload"]
    assert payload["severity"] == "error"
    assert payload["source"] == "prod"
    assert payload["component"] == "database"
    assert payload["summary"].startswith("[P2] prod: test_checks.py::test_db_answers failed: observed db down")
    assert payload["custom_details"]["check"] == "test_checks.py::test_db_answers"
    assert "sekrit-token-123" not in json.dumps(trigger)
    assert "[REDACTED]" in payload["custom_details"]["failure"]
    first.stdout.fnmatch_lines(["alerts (pagerduty to http://127.0.0.1:*): 1 trigger, 0 resolve sent; 1 open*"])

    suite.run(f"--alert-webhook={receiver.url}").assert_outcomes(passed=3, failed=1)
    assert len(receiver.posts) == 1, "a persisting failure must not page again"

    suite.fail()
    suite.run(f"--alert-webhook={receiver.url}").assert_outcomes(passed=4)
    assert receiver.posts[1:] == [
        {"routing_key": "routing-key-0123456789", "event_action": "resolve", "dedup_key": key}
    ]
    state = json.loads((suite.path / "reports" / "alert-state.json").read_text())
    assert state == {"version": 1, "open": {}}


def test_each_severity_maps_to_its_pagerduty_severity(suite, receiver):  # noqa: F811
    suite.fail("api", "db", "frontend", "logs")
    suite.run(f"--alert-webhook={receiver.url}", "--alert-severity=p4")
    assert {p["payload"]["class"]: p["payload"]["severity"] for p in receiver.posts} == {
        "p1": "critical",
        "p2": "error",
        "p3": "warning",
        "p4": "info",
    }


def test_failures_below_the_alert_severity_do_not_page(suite, receiver):  # noqa: F811
    suite.fail("frontend", "logs")
    result = suite.run(f"--alert-webhook={receiver.url}")
    result.assert_outcomes(passed=2, failed=2)
    assert receiver.posts == []


def test_an_unanswering_receiver_costs_one_read_timeout_and_does_not_fail_the_run(suite, silent_receiver):  # noqa: F811
    suite.fail("api", "db")
    started = time.monotonic()
    result = suite.run(f"--alert-webhook={silent_receiver}")
    elapsed = time.monotonic() - started
    assert result.ret == 1  # the checks' failures, not an internal error
    assert elapsed < alerts.READ_TIMEOUT + 2.5, f"run took {elapsed:.1f} s"
    result.stdout.fnmatch_lines(["alerts: 2 event(s) not delivered, retried on the next run: timeout after 3.0 s"])
    assert not (suite.path / "reports" / "alert-state.json").exists()


def test_notification_results_record_each_event_for_the_report_writer(suite, silent_receiver):  # noqa: F811
    suite.fail("api", "db")
    recorder = suite.pytester.inline_run("test_checks.py", f"--alert-webhook={silent_receiver}")
    results = alerts.notification_results(recorder.getcall("pytest_sessionfinish").session.config)
    assert [(r["event"], r["check"], r["sent"]) for r in results] == [
        ("trigger", "test_checks.py::test_api_answers", False),
        ("trigger", "test_checks.py::test_db_answers", False),
    ]
    assert results[0]["error"] == "timeout after 3.0 s"
    assert results[1]["error"] == "not sent: receiver unreachable (timeout after 3.0 s)"


def test_a_missing_routing_key_is_reported_and_the_run_goes_on(suite, receiver, monkeypatch):  # noqa: F811
    monkeypatch.delenv("PAGERDUTY_ROUTING_KEY")
    suite.fail("api")
    result = suite.run(f"--alert-webhook={receiver.url}")
    result.assert_outcomes(passed=3, failed=1)
    assert receiver.posts == []
    result.stdout.fnmatch_lines(["*1 event(s) not delivered*PAGERDUTY_ROUTING_KEY (routing key) is empty"])


def test_slack_format_posts_one_message_per_problem_and_per_recovery(suite, receiver):  # noqa: F811
    suite.fail("api")
    suite.run(f"--alert-webhook={receiver.url}", "--alert-format=slack")
    suite.run(f"--alert-webhook={receiver.url}", "--alert-format=slack")
    suite.fail()
    suite.run(f"--alert-webhook={receiver.url}", "--alert-format=slack")
    assert [set(p) for p in receiver.posts] == [{"text"}, {"text"}]
    assert receiver.posts[0]["text"].startswith(":rotating_light: [P1] prod: `test_checks.py::test_api_answers` failed")
    assert receiver.posts[1]["text"] == ":white_check_mark: prod: `test_checks.py::test_api_answers` passes again"


def test_a_maintenance_window_suppresses_alerts_while_checks_still_fail(suite, receiver, monkeypatch):  # noqa: F811
    monkeypatch.setenv("FOSSAWORK_MAINTENANCE_UNTIL", "2999-01-01T00:00:00Z")
    suite.fail("api")
    result = suite.run(f"--alert-webhook={receiver.url}")
    assert result.ret == 1
    assert receiver.posts == []
    result.stdout.fnmatch_lines(
        [
            "*not delivered, retried on the next run: suppressed: maintenance until 2999-01-01T00:00:00+00:00",
            "maintenance until 2999-01-01T00:00:00+00:00: alerts suppressed, checks ran and reported as usual",
        ]
    )
    # After the window the problem, still there, pages.
    monkeypatch.setenv("FOSSAWORK_MAINTENANCE_UNTIL", "2000-01-01T00:00:00Z")
    suite.run(f"--alert-webhook={receiver.url}")
    assert [p["event_action"] for p in receiver.posts] == ["trigger"]


def test_only_the_xdist_controller_pages(suite, receiver):  # noqa: F811
    suite.fail("api")
    result = suite.run(f"--alert-webhook={receiver.url}", "-n", "2")
    result.assert_outcomes(passed=3, failed=1)
    assert [p["event_action"] for p in receiver.posts] == ["trigger"]
    assert receiver.posts[0]["payload"]["component"] == "backend"


def test_a_webhook_that_is_not_http_is_a_usage_error(suite):  # noqa: F811
    result = suite.run("--alert-webhook=ftp://example.invalid/hook")
    assert result.ret == 4
    result.stderr.fnmatch_lines(["*--alert-webhook: 'ftp://example.invalid/hook' is not an http(s) URL"])


@pytest.mark.parametrize("behaviour", ["drip", "slow_headers"])
def test_a_receiver_that_drips_its_answer_costs_at_most_one_post_bound(suite, behaviour):  # noqa: F811
    # drip: 202 Accepted, then its body a byte every half second, forever; slow_headers: headers that never end.
    # Before, requests waited for the body's end as long as bytes kept coming, holding the alert-state lock.
    suite.fail("api", "db", "frontend")
    with HostileServer(behaviour, status=202) as server:
        started = time.monotonic()
        recorder = suite.pytester.inline_run("test_checks.py", f"--alert-webhook={server.url}/v2/enqueue")
        elapsed = time.monotonic() - started
    bound = alerts.CONNECT_TIMEOUT + 2 * alerts.READ_TIMEOUT
    assert elapsed < bound + 2.0, f"run took {elapsed:.1f} s, one post may take {bound:g} s"
    results = alerts.notification_results(recorder.getcall("pytest_sessionfinish").session.config)
    timeout = f"timeout: no complete answer within {bound:.1f} s (connect + 2 x read)"
    # Not known to be accepted, so not written to the state: the next run sends it again.
    assert [(r["sent"], r["error"]) for r in results] == [
        (False, timeout),
        (False, f"not sent: receiver unreachable ({timeout})"),
    ]


# Holds the alert-state lock like a run stopped while notifying, until the test closes its stdin.
LOCK_HOLDER = """
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT)
fcntl.flock(fd, fcntl.LOCK_EX)
print("locked", flush=True)
sys.stdin.readline()
"""


def test_a_run_holding_the_alert_state_forever_costs_the_next_run_at_most_the_lock_wait(suite, receiver):  # noqa: F811
    # Before, the next run waited in flock for as long as the holder lived: forever, for a stopped run.
    suite.fail("api")
    lock = suite.path / "reports" / "alert-state.json.lock"
    lock.parent.mkdir()
    holder = subprocess.Popen(
        [sys.executable, "-c", LOCK_HOLDER, str(lock)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        started = time.monotonic()
        result = suite.run(f"--alert-webhook={receiver.url}")
        elapsed = time.monotonic() - started
    finally:
        holder.stdin.close()
        holder.wait(timeout=5)
    assert result.ret == 1
    assert alerts.LOCK_WAIT <= elapsed < alerts.LOCK_WAIT + 3.0, f"run took {elapsed:.1f} s"
    # Paged all the same, without the state: the next run pages again, and PagerDuty folds it by dedup_key.
    assert [p["event_action"] for p in receiver.posts] == ["trigger"]
    assert not (suite.path / "reports" / "alert-state.json").exists()
    result.stdout.fnmatch_lines(
        [f"alerts: WARNING: alert state * locked by another run for more than {alerts.LOCK_WAIT:g} s: sent without it"]
    )
