"""Page when checks fail and when they recover: PagerDuty Events API v2, or a Slack-compatible webhook.

With ``--alert-webhook URL`` (or env FOSSAWORK_ALERT_WEBHOOK), a failing check
of at least ``--alert-severity`` (default p2) sends one ``trigger`` event; the
same failure on later runs sends nothing (the run remembers what it triggered in
``<report dir>/alert-state.json``, and the ``dedup_key`` — sha256 of target and
node id — lets PagerDuty deduplicate too). When such a check passes on a later
run, one ``resolve`` event is sent. ``--alert-format slack`` posts
``{"text": ...}`` once per new problem and once per recovery instead.

Waived checks (remediation.gate) and skipped checks send nothing: a waiver is
not a recovery, so an open incident stays open until the check really passes.
Inside a maintenance window (``--maintenance-until``) nothing is sent and the
state is left as it was, so a problem still there afterwards pages then.

Notifying never fails the run: each POST waits at most 2 s to connect and 3 s
for the answer, the first receiver that is down (or answers 5xx / 429) stops
the remaining posts, and all posts share a 10 s budget. Events not delivered
are not written to the state, so the next run sends them again. The outcome of
every event is in :func:`notification_results` (for the report writer) and in
the terminal summary. A state that cannot be written (the report directory is
not the run's user's) does not stop the pages either: :func:`state_error` keeps
why, and the run ends with exit 3 (``remediation.plugin``). Runs only on the
xdist controller.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests

from fixtures.target import targets
from observe import secrets
from remediation import gate
from remediation.contract import SEVERITIES
from remediation.results import CheckResult, rank, results_of
from remediation.storage import report_dir, write_atomically

pytest_plugins = ["remediation.results"]

WEBHOOK_ENV = "FOSSAWORK_ALERT_WEBHOOK"
STATE_FILE = "alert-state.json"
FORMATS = ("pagerduty", "slack")
PAGERDUTY_SEVERITY = {"p1": "critical", "p2": "error", "p3": "warning", "p4": "info"}
CONNECT_TIMEOUT = 2.0
READ_TIMEOUT = 3.0
TOTAL_BUDGET = 10.0
SUMMARY_LIMIT = 1024  # PagerDuty truncates payload.summary at 1024 characters

HELP_WEBHOOK = f"POST alerts to this URL (PagerDuty: https://events.pagerduty.com/v2/enqueue). Env {WEBHOOK_ENV}."
HELP_SEVERITY = "Alert on failed checks of this severity or worse (default p2: P1 and P2)."
HELP_ROUTING_KEY_ENV = "Environment variable holding the PagerDuty integration (routing) key."
HELP_FORMAT = "Alert format: 'pagerduty' (Events API v2, default) or 'slack' ({\"text\": ...} messages)."

RESULTS_KEY = pytest.StashKey[list]()
STATE_ERROR_KEY = pytest.StashKey[OSError]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("fossawork", "FossaWork V2 health checks")
    group.addoption("--alert-webhook", default=None, metavar="URL", help=HELP_WEBHOOK)
    group.addoption("--alert-severity", default="p2", choices=SEVERITIES, metavar="pN", help=HELP_SEVERITY)
    group.addoption(
        "--alert-routing-key-env", default="PAGERDUTY_ROUTING_KEY", metavar="NAME", help=HELP_ROUTING_KEY_ENV
    )
    group.addoption("--alert-format", default="pagerduty", choices=FORMATS, help=HELP_FORMAT)


def pytest_configure(config: pytest.Config) -> None:
    config.stash[RESULTS_KEY] = []
    if hasattr(config, "workerinput"):  # the controller alone pages, once per run
        return
    url, source = config.getoption("alert_webhook"), "--alert-webhook"
    if not url:
        url, source = os.environ.get(WEBHOOK_ENV, ""), f"environment variable {WEBHOOK_ENV}"
    if not url:
        return
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise pytest.UsageError(f"{source}: {url!r} is not an http(s) URL")
    # A Slack webhook's path is its secret: keep it out of error messages and reports.
    secrets.register(url)
    secrets.register(parts.path + (f"?{parts.query}" if parts.query else ""))
    config.pluginmanager.register(Notifier(config, url), "fossawork-alerts")


def pytest_unconfigure(config: pytest.Config) -> None:
    plugin = config.pluginmanager.get_plugin("fossawork-alerts")
    if plugin is not None:
        config.pluginmanager.unregister(plugin)


def notification_results(config: pytest.Config) -> list[dict]:
    """Every alert event of this run: event, check, target, dedup_key, format, sent, status, error."""
    return list(config.stash.get(RESULTS_KEY, []))


def state_error(config: pytest.Config) -> OSError | None:
    """Why this run could not keep its alert state in the report directory, or None."""
    return config.stash.get(STATE_ERROR_KEY, None)


def dedup_key(target: str, nodeid: str) -> str:
    """The PagerDuty dedup_key of one check on one target: stable across runs."""
    return hashlib.sha256(f"{target}\0{nodeid}".encode()).hexdigest()


def state_path(config: pytest.Config) -> Path:
    """``alert-state.json`` in the run's report directory."""
    return report_dir(config.getoption("report_dir", None)) / STATE_FILE


@contextlib.contextmanager
def locked(path: Path):
    """Hold an exclusive lock next to ``path`` so that parallel runs (several targets) do not lose updates."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "a") as handle:
        try:
            import fcntl
        except ImportError:  # not POSIX: runs are serialized by the scheduler instead
            yield
            return
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def read_state(path: Path) -> tuple[dict, str | None]:
    """The open alerts {dedup_key: details}; an unreadable file starts empty (PagerDuty dedups a re-trigger)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return dict(data["open"]), None
    except FileNotFoundError:
        return {}, None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return {}, f"alert state {path} unreadable ({exc.__class__.__name__}), starting afresh"


def write_state(path: Path, open_alerts: dict) -> None:
    """Replace the state file atomically: a crash mid-write leaves the previous state."""
    write_atomically(path, json.dumps({"version": 1, "open": open_alerts}, indent=2, sort_keys=True) + "\n", 0o600)


@dataclass
class Event:
    """One alert to deliver: a new problem (trigger) or a recovery (resolve) of one check."""

    action: str
    check: CheckResult
    key: str


class Notifier:
    """Collects the run's results on the controller and delivers alert events at session finish."""

    def __init__(self, config: pytest.Config, url: str):
        self.config = config
        self.url = url
        self.format = config.getoption("alert_format")
        self.threshold = rank(config.getoption("alert_severity"))
        self.routing_key_env = config.getoption("alert_routing_key_env")
        self.notes: list[str] = []
        self.open_alerts: dict | None = None  # the state as this run leaves it, once its events are delivered
        self.open_count = 0

    @property
    def receiver(self) -> str:
        """The webhook without its path (which may be a secret), for humans."""
        parts = urlsplit(self.url)
        return f"{parts.scheme}://{parts.netloc}"

    @pytest.hookimpl(tryfirst=True)  # before report writers read notification_results()
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        path = state_path(self.config)
        try:
            with locked(path):
                self.notify(path, keep=True)
        except OSError as exc:
            # The lock or the state cannot be written. This run's alerts go out all the same; with no state kept,
            # the next run sends them again (PagerDuty folds a repeat into the open incident by dedup_key).
            self.config.stash[STATE_ERROR_KEY] = exc
            if self.open_alerts is None:
                self.notify(path, keep=False)
        names = set(targets(self.config))
        self.open_count = sum(1 for details in self.open_alerts.values() if details.get("target") in names)

    def notify(self, path: Path, keep: bool) -> None:
        """Deliver this run's events against the state in ``path``; ``keep``: write the state they leave."""
        open_alerts, problem = read_state(path)
        if problem:
            self.notes.append(problem)
        events = self.events(open_alerts)
        until = gate.maintenance_until(self.config)
        if until is not None:
            delivered = self.suppress(events, f"suppressed: maintenance until {until.isoformat()}")
        else:
            delivered = self.deliver(events)
        for event in delivered:
            if event.action == "trigger":
                open_alerts[event.key] = {
                    "target": event.check.target,
                    "check": event.check.nodeid,
                    "severity": event.check.severity,
                    "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                }
            else:
                open_alerts.pop(event.key, None)
        self.open_alerts = open_alerts
        if keep and (delivered or problem):
            write_state(path, open_alerts)

    def events(self, open_alerts: dict) -> list[Event]:
        """New problems at or above the alert severity, then recoveries of checks with an open alert."""
        events = []
        for check in sorted(results_of(self.config).with_status("failed"), key=lambda c: c.rank):
            key = dedup_key(check.target, check.nodeid)
            if check.rank <= self.threshold and key not in open_alerts:
                events.append(Event("trigger", check, key))
        for check in results_of(self.config).with_status("passed"):
            key = dedup_key(check.target, check.nodeid)
            if key in open_alerts:
                events.append(Event("resolve", check, key))
        return events

    def suppress(self, events: list[Event], reason: str) -> list[Event]:
        for event in events:
            self.record(event, sent=False, error=reason)
        return []

    def deliver(self, events: list[Event]) -> list[Event]:
        """POST each event within the time bounds; returns the events the receiver accepted."""
        routing_key = os.environ.get(self.routing_key_env, "") if self.format == "pagerduty" else ""
        if self.format == "pagerduty" and not routing_key:
            return self.suppress(
                events, f"not sent: environment variable {self.routing_key_env} (routing key) is empty"
            )
        secrets.register(routing_key)
        delivered, stop = [], None
        deadline = time.monotonic() + TOTAL_BUDGET
        with requests.Session() as http:
            for event in events:
                remaining = deadline - time.monotonic()
                if stop is None and remaining <= 0:
                    stop = f"not sent: the {TOTAL_BUDGET:g} s notification budget was used up"
                if stop is not None:
                    self.record(event, sent=False, error=stop)
                    continue
                body = self.body(event, routing_key)
                timeout = (min(CONNECT_TIMEOUT, remaining), min(READ_TIMEOUT, remaining))
                try:
                    answer = http.post(self.url, json=body, timeout=timeout)
                except requests.RequestException as exc:
                    error = f"{exc.__class__.__name__}: {secrets.redact(str(exc))[:200]}"
                    self.record(event, sent=False, error=error)
                    stop = f"not sent: receiver unreachable ({exc.__class__.__name__})"
                    continue
                if 200 <= answer.status_code < 300:
                    self.record(event, sent=True, status=answer.status_code)
                    delivered.append(event)
                    continue
                error = f"HTTP {answer.status_code}: {secrets.redact(answer.text.strip())[:200]}"
                self.record(event, sent=False, status=answer.status_code, error=error)
                if answer.status_code >= 500 or answer.status_code == 429:
                    stop = f"not sent: receiver failing (HTTP {answer.status_code})"
        return delivered

    def body(self, event: Event, routing_key: str) -> dict:
        """The JSON document of one event in the configured format."""
        check, target = event.check, event.check.target
        severity = check.severity or "p1"
        if self.format == "slack":
            if event.action == "resolve":
                return {"text": f":white_check_mark: {target}: `{check.nodeid}` passes again"}
            return {
                "text": f":rotating_light: [{severity.upper()}] {target}: `{check.nodeid}` failed "
                f"({check.component or 'unknown component'})\n{check.message}"
            }
        if event.action == "resolve":
            return {"routing_key": routing_key, "event_action": "resolve", "dedup_key": event.key}
        summary = f"[{severity.upper()}] {target}: {check.nodeid} failed: {check.message}"
        return {
            "routing_key": routing_key,
            "event_action": "trigger",
            "dedup_key": event.key,
            "client": "fossawork-health",
            "payload": {
                "summary": summary[: SUMMARY_LIMIT - 3] + "..." if len(summary) > SUMMARY_LIMIT else summary,
                "source": target,
                "severity": PAGERDUTY_SEVERITY[severity],
                "component": check.component or "unknown",
                "group": "fossawork-health",
                "class": severity,
                "custom_details": {
                    "check": check.nodeid,
                    "severity": severity,
                    "failure": check.message,
                    "attempts": check.attempts,
                    "target": target,
                },
            },
        }

    def record(self, event: Event, sent: bool, status: int | None = None, error: str | None = None) -> None:
        self.config.stash[RESULTS_KEY].append(
            {
                "event": event.action,
                "check": event.check.nodeid,
                "target": event.check.target,
                "dedup_key": event.key,
                "format": self.format,
                "sent": sent,
                "status": status,
                "error": error,
            }
        )

    def pytest_terminal_summary(self, terminalreporter) -> None:
        tr = terminalreporter
        results = notification_results(self.config)
        sent = [r for r in results if r["sent"]]
        counts = ", ".join(f"{sum(r['event'] == action for r in sent)} {action}" for action in ("trigger", "resolve"))
        tr.write_line(f"alerts ({self.format} to {self.receiver}): {counts} sent; {self.open_count} open")
        for note in self.notes:
            tr.write_line(f"alerts: WARNING: {note}", yellow=True)
        failed = [r for r in results if not r["sent"]]
        if failed:
            tr.write_line(
                f"alerts: {len(failed)} event(s) not delivered, retried on the next run: {failed[0]['error']}",
                red=not failed[0]["error"].startswith("suppressed"),
                yellow=failed[0]["error"].startswith("suppressed"),
            )
