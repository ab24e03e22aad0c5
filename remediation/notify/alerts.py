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

Notifying never fails the run and never waits unbounded: each POST goes
through ``observe.http`` (2 s to resolve and connect, 3 s for each wait on the
answer, and connect + 2 x read = 8 s in all however slowly the receiver sends),
all posts share a 10 s budget, and the first receiver that is down, gives no
complete answer in time or answers 5xx / 429 stops the remaining posts. Events
not delivered are not written to the state, so the next run sends them again.
The outcome of every event is in :func:`notification_results` (for the report
writer) and in the terminal summary. A state that cannot be written (the report
directory is not the run's user's) does not stop the pages either:
:func:`state_error` keeps why, and the run ends with exit 3
(``remediation.plugin``). Nor does a state lock held past any delivery's bound
(by a run stopped while notifying): the run waits for it at most LOCK_WAIT, then
pages without the state, and says so. Runs only on the xdist controller.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from fixtures.target import targets
from observe import secrets
from observe.files import read_small
from observe.http import Http
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
MIN_READ = 0.1  # a post with less time than this left for its answer is not sent
# Another run holds the state lock for at most its TOTAL_BUDGET (plus reading and writing a small file).
LOCK_WAIT = TOTAL_BUDGET + 5.0
STATE_LIMIT = 16 << 20  # thousands of open alerts fit in a few MiB
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


class StateBusy(Exception):
    """Another run held the alert state for longer than LOCK_WAIT; str() is one line."""


@contextlib.contextmanager
def locked(path: Path, wait: float = LOCK_WAIT):
    """Hold an exclusive lock next to ``path`` so that parallel runs (several targets) do not lose updates.

    Waits at most ``wait`` seconds for it (StateBusy then): a run stopped while holding it must not block every
    later run. O_NONBLOCK: a FIFO in the lock file's place fails (OSError) instead of waiting for a reader.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path.with_name(path.name + ".lock"), os.O_WRONLY | os.O_CREAT | os.O_NONBLOCK | os.O_CLOEXEC, 0o600)
    try:
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise StateBusy(f"alert state {path} locked by another run for more than {wait:g} s") from None
                time.sleep(0.1)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def read_state(path: Path) -> tuple[dict, str | None]:
    """The open alerts {dedup_key: details}; an unreadable file starts empty (PagerDuty dedups a re-trigger)."""
    try:
        data = json.loads(read_small(path, STATE_LIMIT).decode("utf-8"))
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
        except StateBusy as exc:
            # Another run has held the state longer than any delivery takes: page without it, as below.
            self.notes.append(f"{exc}: sent without it")
            self.notify(path, keep=False)
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
        http = Http(CONNECT_TIMEOUT, READ_TIMEOUT)
        try:
            for event in events:
                # connect + 2 x read, the most one post can take, must fit in what is left of the budget.
                read = min(READ_TIMEOUT, (deadline - time.monotonic() - CONNECT_TIMEOUT) / 2)
                if stop is None and read < MIN_READ:
                    stop = f"not sent: the {TOTAL_BUDGET:g} s notification budget was used up"
                if stop is not None:
                    self.record(event, sent=False, error=stop)
                    continue
                answer = http.request("POST", self.url, read=read, json=self.body(event, routing_key))
                if answer.error is not None:
                    # No complete answer (down, too slow, a body that never ends): not known to be accepted, so it
                    # is sent again next run; PagerDuty folds a repeated trigger into its dedup_key's incident.
                    self.record(event, sent=False, status=answer.status, error=answer.error)
                    stop = f"not sent: receiver unreachable ({answer.error})"
                    continue
                if 200 <= answer.status < 300:
                    self.record(event, sent=True, status=answer.status)
                    delivered.append(event)
                    continue
                error = f"HTTP {answer.status}: {answer.text().strip()[:200]}"
                self.record(event, sent=False, status=answer.status, error=error)
                if answer.status >= 500 or answer.status == 429:
                    stop = f"not sent: receiver failing (HTTP {answer.status})"
        finally:
            http.close()
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
