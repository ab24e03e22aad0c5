"""Automation issues: the runbook's diagnose-automation.py (Playwright, WorkFossa, automation logs, browsers)."""

from datetime import UTC, datetime, timedelta

import pytest

from fixtures.expect import depends_on, expect, observing
from observe.db import DatabaseUnavailable

fix = pytest.mark.fix
pytestmark = pytest.mark.automation


def _outcomes(on_host, automation):
    window = timedelta(hours=on_host.thresholds.automation_log_max_age_hours)
    with observing(blocked=(DatabaseUnavailable,)):  # a missing table or database is reported by its own checks
        outcomes = automation.outcomes(window)
    depends_on(outcomes.attempts, f"no automation attempts in the last {window} ({outcomes.evidence})")
    return outcomes


@pytest.mark.p2
@fix("fix-automation-issues", "browser_issues")
def test_headless_browser_launches(browser_launch, on_host):
    """Playwright browser installation broken: the automation's browser does not start.

    Differs from the runbook: launches the configured Chromium headless instead of running `playwright install-deps`
    (which installs packages as a side effect of a check).
    """
    expect(browser_launch.ok, f"observed {on_host.browser_executable}: {browser_launch.detail}, expected a launch")


@pytest.mark.p2
@fix("fix-automation-issues", "workfossa_connectivity")
def test_workfossa_site_answers(target, api):
    """WorkFossa not accessible / WorkFossa connectivity error."""
    answer = api.http.request("GET", target.workfossa_url, read=target.timeouts.workfossa)
    expect(answer.status == 200, f"observed {answer.describe()}, expected 200")


@pytest.mark.p3
@fix("escalate")
def test_automation_logs_are_recent(on_host, automation):
    """No recent automation logs found (none in the last 24 hours).

    Beyond the runbook: where the application records outcomes in a table ([automation] table), the newest row
    counts, not the log file, which FossaWork V2 recreates empty at every start.
    """
    hours = on_host.thresholds.automation_log_max_age_hours
    with observing(blocked=(DatabaseUnavailable,)):
        newest = automation.newest()
    age = None if newest is None else (datetime.now(UTC) - newest).total_seconds() / 3600
    expect(
        age is not None and age <= hours,
        (f"observed newest automation outcome {age:.1f} h ago" if age is not None else "observed no automation outcome")
        + f" in {automation.source}, expected one within {hours:g} h",
    )


@pytest.mark.p3
@fix("fix-automation-issues", "high_failure_rate")
def test_automation_failure_rate_is_under_threshold(on_host, automation):
    """High automation failure rate (over 20 %)."""
    got = _outcomes(on_host, automation)
    limit = on_host.thresholds.automation_failure_percent
    expect(
        got.failure_percent <= limit,
        f"observed {got.failed}/{got.attempts} failed ({got.failure_percent:.1f}%) ({got.evidence}), "
        f"expected at most {limit:g}%",
    )


@pytest.mark.p2
@fix("fix-automation-issues", "high_failure_rate")
def test_automation_failure_rate_is_not_critical(on_host, automation):
    """Form automation failures >50 % (P2)."""
    got = _outcomes(on_host, automation)
    limit = on_host.thresholds.automation_failure_critical_percent
    expect(
        got.failure_percent <= limit,
        f"observed {got.failed}/{got.attempts} failed ({got.failure_percent:.1f}%) ({got.evidence}), "
        f"expected at most {limit:g}%",
    )


@pytest.mark.p3
@fix("fix-automation-issues", "browser_issues")
def test_browser_processes_are_under_maximum(on_host, processes):
    """Too many browser processes running (zombie browsers).

    Differs from the runbook: counts browsers, not their helper processes (one headless Chromium is several
    processes, so pgrep's count cries wolf during every automation job), and not the suite's own probe.
    """
    found = processes.instances(on_host.browser_process)
    limit = on_host.thresholds.max_browser_processes
    expect(
        len(found) <= limit,
        f"observed {len(found)} {on_host.browser_process} browsers ({'; '.join(p.describe() for p in found[:6])}), "
        f"expected at most {limit}",
    )
