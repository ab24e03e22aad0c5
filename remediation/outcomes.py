"""What the production plugins (gate, alerts, metrics) know about each check's outcome.

An xdist controller has no items, only the reports its workers send. So the
severity and component markers are copied onto each report where the item is
known (``pytest_runtest_makereport``, on the worker or in a plain run): plain
report attributes travel with xdist's report serialization. Every production
plugin lists this module in ``pytest_plugins`` and keeps one :class:`Results`,
fed from ``pytest_runtest_logreport``, which sees the same reports on the
controller as in a plain run.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from fixtures.target import item_target
from observe.secrets import redact
from remediation.catalog import COMPONENTS, SEVERITIES

SEVERITY_ATTR = "fossawork_severity"
COMPONENT_ATTR = "fossawork_component"
TARGET_ATTR = "fossawork_target"
# user_properties names written by remediation.gate and read by every reporter.
WAIVED = "waived"
ATTEMPTS = "attempts"
# Worst first: a check's status over its setup / call / teardown reports is the worst one seen.
_STATUS_ORDER = ("failed", "waived", "skipped", "passed")
MESSAGE_LIMIT = 1000


def rank(severity: str | None) -> int:
    """1 for p1 … 4 for p4; a failing test without a severity marker counts as P1 (fail safe, never silent)."""
    return SEVERITIES.index(severity) + 1 if severity in SEVERITIES else 1


def user_property(report: pytest.TestReport, name: str, default=None):
    """The last value recorded under ``name`` in the report's user_properties."""
    for key, value in reversed(report.user_properties):
        if key == name:
            return value
    return default


def failure_message(report: pytest.TestReport) -> str:
    """The one-line reason of a failed report ("observed X, expected Y"), redacted and bounded."""
    crash = getattr(report.longrepr, "reprcrash", None)
    text = crash.message if crash is not None else report.longreprtext
    text = text.strip().removeprefix("Failed: ")
    if len(text) > MESSAGE_LIMIT:
        text = text[: MESSAGE_LIMIT - 3] + "..."
    return redact(text)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    report = yield
    names = {m.name for m in item.iter_markers()}
    setattr(report, SEVERITY_ATTR, next((s for s in SEVERITIES if s in names), None))
    setattr(report, COMPONENT_ATTR, next((c for c in COMPONENTS if c in names), None))
    setattr(report, TARGET_ATTR, item_target(item))
    return report


@dataclass
class CheckResult:
    """One check over its setup, call and teardown reports."""

    nodeid: str
    severity: str | None
    component: str | None
    target: str
    status: str = ""  # failed, waived, skipped or passed; "" until a report says
    duration: float = 0.0
    message: str = ""
    attempts: int = 1
    waiver: dict | None = None

    @property
    def rank(self) -> int:
        return rank(self.severity)


@dataclass
class Results:
    """Every check's result in this run, in the order the reports arrived."""

    checks: dict[str, CheckResult] = field(default_factory=dict)

    def add(self, report: pytest.TestReport) -> None:
        """Fold one phase report into its check's result."""
        check = self.checks.get(report.nodeid)
        if check is None:
            check = self.checks[report.nodeid] = CheckResult(
                report.nodeid,
                getattr(report, SEVERITY_ATTR, None),
                getattr(report, COMPONENT_ATTR, None),
                getattr(report, TARGET_ATTR, ""),
            )
        check.duration += report.duration
        check.attempts = max(check.attempts, int(user_property(report, ATTEMPTS, 1)))
        waiver = user_property(report, WAIVED)
        if report.failed:
            status = "failed"
        elif waiver is not None:
            status, check.waiver = "waived", waiver
        elif report.skipped:
            status = "skipped"
        elif report.when == "call":
            status = "passed"
        else:
            return
        if not check.status or _STATUS_ORDER.index(status) < _STATUS_ORDER.index(check.status):
            if status == "failed":
                check.message = failure_message(report)
            check.status = status

    def with_status(self, status: str) -> list[CheckResult]:
        return [c for c in self.checks.values() if c.status == status]

    def incident_rank(self, target: str | None = None) -> int:
        """Severity as 1..4 (P1..P4) of the worst failing check (of ``target``), 0 when nothing failed.

        Waived checks are known and accepted, so they do not make an incident.
        """
        failed = [c for c in self.with_status("failed") if target is None or c.target == target]
        return min((c.rank for c in failed), default=0)
