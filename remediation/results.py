"""The one result model: each check's outcome, built once per run and read by every output.

An xdist controller has no items, only the reports its workers send. So the
check's catalog entry (severity, component, symptom, fix, target) is attached
to each report where the item is known, as the user property
``fossawork_check`` holding JSON (user properties cross xdist, and JUnit shows
them as they are). On the controller, or in a plain run, one :class:`Results`
folds the phase reports into one :class:`CheckResult` per check; the incident
reports, the exit gate, alerts and metrics all read that same object.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import pytest

from observe.secrets import redact
from remediation.contract import COMPONENTS, SEVERITIES, describe, is_health_check

pytest_plugins = ["remediation.contract"]

CHECK_PROPERTY = "fossawork_check"
# Written by remediation.rootcause: on a check run as a root cause, the checks it explains; on a failure with a
# cause, that cause's check and fix.
ROOT_CAUSE = "fossawork_root_cause"
CAUSED_BY = "fossawork_caused_by"
# user_properties names written by remediation.gate.
WAIVED = "waived"
ATTEMPTS = "attempts"
# Worst first: a check's status over its setup / call / teardown reports is the worst one seen.
STATUSES = ("failed", "waived", "skipped", "n/a", "passed")
NOT_APPLICABLE = "N/A: "  # the skip reason remediation.applicability gives a check the profile rules out
MESSAGE_LIMIT = 1000
RESULTS_KEY = pytest.StashKey["Results"]()
_ENTRY_KEY = pytest.StashKey[str]()


def rank(severity: str | None) -> int:
    """1 for p1 … 4 for p4; a failing test without a severity marker counts as P1 (fail safe, never silent)."""
    return SEVERITIES.index(severity) + 1 if severity in SEVERITIES else 1


def user_property(report: pytest.TestReport, name: str, default=None):
    """The last value recorded under ``name`` in the report's user_properties."""
    for key, value in reversed(getattr(report, "user_properties", ())):
        if key == name:
            return value
    return default


def failure_message(report: pytest.TestReport) -> str:
    """The one-line reason of a failed report ("observed X, expected Y"), redacted and bounded."""
    crash = getattr(report.longrepr, "reprcrash", None)
    text = crash.message if crash is not None else report.longreprtext
    return _bounded(text.strip().removeprefix("Failed: "))


def skip_reason(report: pytest.TestReport) -> str:
    """Why a check was skipped, without pytest's (file, line, 'Skipped: ') wrapping."""
    text = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr or "")
    return _bounded(text.removeprefix("Skipped: "))


def _bounded(text: str) -> str:
    if len(text) > MESSAGE_LIMIT:
        text = text[: MESSAGE_LIMIT - 3] + "..."
    return redact(text)


@dataclass
class CheckResult:
    """One check of one target over its setup, call and teardown reports, and what remediation did about it."""

    nodeid: str
    check: dict  # the catalog entry (id, component, severity, symptom, script, issue_type, kb, target)
    status: str = ""  # failed, waived, skipped or passed; "" until a report says
    phase: str = ""
    message: str = ""  # the evidence: failure ("observed X, expected Y") or skip reason, redacted
    duration: float = 0.0
    attempts: int = 1
    waiver: dict | None = None
    remediation: dict | None = None  # set by --remediate: the fix run, the re-check and the outcome
    explains: list[str] = field(default_factory=list)  # run as the root cause of these (skipped) checks
    cause: dict | None = None  # failed on a cause another check reports: {id, script, issue_type, kb} of that check

    @property
    def severity(self) -> str | None:
        return self.check.get("severity")

    @property
    def component(self) -> str | None:
        return self.check.get("component")

    @property
    def target(self) -> str:
        return self.check.get("target", "")

    @property
    def outcome(self) -> str:
        """passed, failed or skipped, as the incident counts them (a waived failure is accepted: skipped)."""
        return self.status if self.status in ("passed", "failed") else "skipped"

    @property
    def rank(self) -> int:
        return rank(self.severity)

    @property
    def fix(self) -> dict:
        """{script, issue_type, kb} to offer: the cause's when the failure names one (its own fix cannot help),
        else the check's own."""
        return self.cause or {key: self.check.get(key) for key in ("script", "issue_type", "kb")}


@dataclass(eq=False)  # registered as a plugin: identity, not field equality
class Results:
    """Every check's result in this run, in the order the reports arrived."""

    checks: dict[str, CheckResult] = field(default_factory=dict)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self.add(report)

    def add(self, report: pytest.TestReport) -> None:
        """Fold one phase report into its check's result.

        A test outside ``health/`` has no catalog entry: it still counts for the gate (as P1 without a
        severity marker: fail safe).
        """
        result = self.checks.get(report.nodeid)
        if result is None:
            raw = user_property(report, CHECK_PROPERTY)
            result = self.checks[report.nodeid] = CheckResult(report.nodeid, json.loads(raw) if raw else {})
        result.duration += report.duration
        result.explains = user_property(report, ROOT_CAUSE, result.explains)
        result.cause = user_property(report, CAUSED_BY, result.cause)
        result.attempts = max(result.attempts, int(user_property(report, ATTEMPTS, 1)))
        waiver = user_property(report, WAIVED)
        if report.failed:
            status = "failed"
        elif waiver is not None:
            status, result.waiver = "waived", waiver
        elif report.skipped:
            status = "n/a" if skip_reason(report).startswith(NOT_APPLICABLE) else "skipped"
        elif report.when == "call":
            status = "passed"
        else:
            return
        if not result.status or STATUSES.index(status) < STATUSES.index(result.status):
            result.status, result.phase = status, report.when
            if status == "failed":
                result.message = failure_message(report)
            elif status in ("skipped", "n/a"):
                result.message = skip_reason(report)

    def with_status(self, status: str) -> list[CheckResult]:
        return [c for c in self.checks.values() if c.status == status]

    def health_checks(self) -> list[CheckResult]:
        """The results of health checks (those with a catalog entry: an id, a symptom and a fix)."""
        return [c for c in self.checks.values() if "id" in c.check]

    def incident_rank(self, target: str | None = None) -> int:
        """Severity as 1..4 (P1..P4) of the worst failing check (of ``target``), 0 when nothing failed.

        Waived checks are known and accepted, so they do not make an incident.
        """
        failed = [c for c in self.with_status("failed") if target is None or c.target == target]
        return min((c.rank for c in failed), default=0)


def results_of(config: pytest.Config) -> Results:
    """This run's results (empty on xdist workers, which send their reports to the controller)."""
    return config.stash[RESULTS_KEY]


def pytest_configure(config: pytest.Config) -> None:
    config.stash[RESULTS_KEY] = Results()
    if not hasattr(config, "workerinput"):
        config.pluginmanager.register(config.stash[RESULTS_KEY], "fossawork-results")


def pytest_unconfigure(config: pytest.Config) -> None:
    results = config.stash.get(RESULTS_KEY, None)
    if results is not None and config.pluginmanager.is_registered(results):
        config.pluginmanager.unregister(results)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    report = yield
    if _ENTRY_KEY not in item.stash:
        item.stash[_ENTRY_KEY] = json.dumps(entry_of(item))
    report.user_properties.append((CHECK_PROPERTY, item.stash[_ENTRY_KEY]))
    if is_health_check(item):
        _redact(report)
    return report


def entry_of(item: pytest.Item) -> dict:
    """The catalog entry of a health check; for any other test, what its markers say (the gate still counts it)."""
    from fixtures.target import item_target

    if is_health_check(item):
        return {**describe(item).as_dict(), "target": item_target(item)}
    names = {m.name for m in item.iter_markers()}
    return {
        "severity": next((s for s in SEVERITIES if s in names), None),
        "component": next((c for c in COMPONENTS if c in names), None),
        "target": item_target(item),
    }


def _redact(report: pytest.TestReport) -> None:
    """Mask secrets in the failure text and captured output before any reporter (or xdist) sees them."""
    if report.failed and report.longrepr is not None:
        text = str(report.longrepr)
        if redact(text) != text:
            report.longrepr = redact(text)
    report.sections = [(title, redact(content)) for title, content in report.sections]
