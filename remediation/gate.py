"""What makes a scheduled run fail and page: severity gate, confirmation re-runs, waivers, maintenance.

``--exit-severity pN``
    A run exits 1 only when a check of severity pN or worse failed; when only
    less severe checks failed the exit status becomes 0 (the failures are still
    reported). A failing test without a severity marker counts as P1.
``--confirm N``
    A failing check is run up to N more times before it counts as failed, so a
    single dropped packet does not page. The report is the last attempt's; its
    user_properties carry ``("attempts", n)``. Earlier attempts tear down every
    fixture, session ones included: the probes (``api``) cache their answers per
    session, and a re-run on cached answers would confirm nothing.
``--waivers PATH``
    TOML ``[[waiver]]`` entries (check = node id or glob, reason, owner,
    expires = 2026-12-31). A waiver that matches no collected check (before
    ``-m`` / ``-k`` deselect any) is a usage error, exit 4, that lists it: a
    typo would otherwise waive nothing, silently. Runs that name single checks
    (``file::test``) are not judged, nor waivers of files the run did not
    collect. A waived failing check is reported as *waived*: the
    report's outcome becomes "skipped" with ``wasxfail`` set, which the terminal
    shows as WAIVED, JUnit as ``<skipped type="pytest.xfail" message="waived: …">``
    and the incident page as a waived row; it neither fails the run nor pages.
    ``("waived", {...})`` is added to its user_properties. A waiver past its
    ``expires`` date is ignored (the check fails as usual) and flagged in the
    terminal summary and as ``("waiver_expired", {...})``.
``--maintenance-until ISO8601``
    Until then, alerts (remediation.alerts) are suppressed; checks still run,
    report and set the exit status.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import os
import tomllib
from dataclasses import asdict, dataclass
from pathlib import Path

import pytest
from _pytest.runner import runtestprotocol

from remediation.contract import SEVERITIES
from remediation.results import ATTEMPTS, WAIVED, rank, results_of

pytest_plugins = ["remediation.results"]

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_WAIVERS = ROOT / "waivers.toml"
MAINTENANCE_ENV = "FOSSAWORK_MAINTENANCE_UNTIL"
WAIVER_EXPIRED = "waiver_expired"
# xdist: a worker's unmatched-waiver message, sent to the controller with the worker's output.
UNMATCHED_WAIVERS = "fossawork_unmatched_waivers"

HELP_EXIT_SEVERITY = (
    "Exit non-zero only when a check of this severity or worse failed (p2: P1 and P2 failures fail the run, "
    "P3/P4 failures are reported but exit 0)."
)
HELP_CONFIRM = "Re-run a failing check up to N more times before it counts as failed (default 0)."
HELP_WAIVERS = (
    f"TOML file of [[waiver]] entries for known failing checks (default: {DEFAULT_WAIVERS.name} in the repo)."
)
HELP_MAINTENANCE = (
    f"Suppress alerts until this ISO 8601 time (2026-05-01T06:00+02:00); checks still run. Env {MAINTENANCE_ENV}."
)

STATE_KEY = pytest.StashKey["GateState"]()


@dataclass(frozen=True)
class Waiver:
    """A known failing check someone answers for, until a date."""

    check: str
    reason: str
    owner: str
    expires: dt.date

    def matches(self, nodeid: str) -> bool:
        # Exact first: node ids of parametrized checks contain [..], which a glob reads as a character class.
        return nodeid == self.check or fnmatch.fnmatchcase(nodeid, self.check)

    def expired(self, today: dt.date) -> bool:
        """Whether the waiver is past its last valid day (``expires`` itself is still covered)."""
        return self.expires < today

    def as_dict(self) -> dict:
        return asdict(self) | {"expires": self.expires.isoformat()}


@dataclass(eq=False)  # registered as a plugin: identity, not field equality
class GateState:
    """The gate's settings for this run and, on the controller, what it saw."""

    exit_severity: str | None
    confirm: int
    waivers: list[Waiver]
    waivers_path: Path
    today: dt.date
    maintenance_until: dt.datetime | None
    downgraded: int = 0  # failures that no longer fail the run because of --exit-severity
    usage_error: str | None = None  # on an xdist controller: what a worker found wrong with the waivers


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("fossawork", "FossaWork V2 health checks")
    group.addoption("--exit-severity", default=None, choices=SEVERITIES, metavar="pN", help=HELP_EXIT_SEVERITY)
    group.addoption("--confirm", default=0, type=int, metavar="N", help=HELP_CONFIRM)
    group.addoption("--waivers", default=None, metavar="PATH", help=HELP_WAIVERS)
    group.addoption("--maintenance-until", default=None, metavar="ISO8601", help=HELP_MAINTENANCE)


def load_waivers(path: Path) -> list[Waiver]:
    """Parse a waivers file; anything wrong is a UsageError naming the file, the entry and the key."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise pytest.UsageError(f"--waivers {path}: file not found") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise pytest.UsageError(f"--waivers {path}: cannot read ({exc})") from None
    unknown = set(data) - {"waiver"}
    if unknown or not isinstance(data.get("waiver", []), list):
        raise pytest.UsageError(f"--waivers {path}: expected only [[waiver]] tables, found {sorted(data)}")
    waivers = []
    for number, entry in enumerate(data.get("waiver", []), 1):
        where = f"--waivers {path}: waiver #{number}"
        for key, kind in (("check", str), ("reason", str), ("owner", str), ("expires", dt.date)):
            value = entry.get(key)
            if not isinstance(value, kind) or isinstance(value, dt.datetime) or value == "":
                expected = "a date like 2026-12-31 (TOML date, no quotes)" if kind is dt.date else "a non-empty string"
                raise pytest.UsageError(f"{where}: {key!r} must be {expected}, got {value!r}")
        extra = set(entry) - {"check", "reason", "owner", "expires"}
        if extra:
            raise pytest.UsageError(f"{where}: unknown key(s) {sorted(extra)} (known: check, reason, owner, expires)")
        waivers.append(Waiver(entry["check"], entry["reason"], entry["owner"], entry["expires"]))
    return waivers


def parse_maintenance(config: pytest.Config, now: dt.datetime) -> dt.datetime | None:
    """The end of the maintenance window from the option or the environment; a time without zone is local."""
    raw, source = config.getoption("maintenance_until"), "--maintenance-until"
    if not raw:
        raw, source = os.environ.get(MAINTENANCE_ENV, ""), f"environment variable {MAINTENANCE_ENV}"
    if not raw:
        return None
    try:
        until = dt.datetime.fromisoformat(raw.strip())
    except ValueError:
        raise pytest.UsageError(
            f"{source}: {raw!r} is not an ISO 8601 time; use e.g. 2026-05-01T06:00+02:00 or 2026-05-01T04:00Z"
        ) from None
    return until.astimezone() if until.tzinfo is None else until


def pytest_configure(config: pytest.Config) -> None:
    confirm = config.getoption("confirm")
    if confirm < 0:
        raise pytest.UsageError(f"--confirm {confirm}: expected 0 or more re-runs")
    explicit = config.getoption("waivers")
    path = Path(explicit) if explicit else DEFAULT_WAIVERS
    config.stash[STATE_KEY] = GateState(
        exit_severity=config.getoption("exit_severity"),
        confirm=confirm,
        waivers=load_waivers(path) if explicit or path.is_file() else [],
        waivers_path=path,
        today=dt.date.today(),
        maintenance_until=parse_maintenance(config, dt.datetime.now(dt.UTC)),
    )


def unmatched_waivers(waivers: list[Waiver], nodeids: list[str], root: Path) -> list[tuple[int, Waiver]]:
    """The waivers (numbered as in their file) that match none of ``nodeids`` although the run looked there.

    A waiver whose file part names a file this run did not collect (``pytest health/test_auth.py`` and a
    waiver of a performance check) is not judged; one naming a collected file, or no existing file, is.
    """
    files = {nodeid.split("::", 1)[0] for nodeid in nodeids}
    found = []
    for number, waiver in enumerate(waivers, 1):
        if any(waiver.matches(nodeid) for nodeid in nodeids):
            continue
        named = waiver.check.split("::", 1)[0]
        if any(f == named or fnmatch.fnmatchcase(f, named) for f in files) or not _exists(root, named):
            found.append((number, waiver))
    return found


def _exists(root: Path, pattern: str) -> bool:
    try:
        return next(root.glob(pattern), None) is not None
    except (ValueError, NotImplementedError, OSError):  # empty, absolute or unreadable: names nothing here
        return False


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A waiver matching no collected check stops the run (exit 4); tryfirst: before -m / -k deselect any."""
    state = config.stash[STATE_KEY]
    if not state.waivers or any("::" in str(arg) for arg in config.args):
        return
    unmatched = unmatched_waivers(state.waivers, [item.nodeid for item in items], config.rootpath)
    if not unmatched:
        return
    listed = "; ".join(f"#{n} {w.check!r} (owner {w.owner})" for n, w in unmatched)
    message = (
        f"--waivers {state.waivers_path}: {len(unmatched)} waiver(s) match no collected check, "
        f"so they would waive nothing; fix the check id or remove them: {listed}"
    )
    if not hasattr(config, "workerinput"):
        raise pytest.UsageError(message)
    # A UsageError on an xdist worker ends as an INTERNALERROR: run nothing and let the controller say why.
    config.hook.pytest_deselected(items=list(items))
    items[:] = []
    config.workeroutput[UNMATCHED_WAIVERS] = message


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error) -> None:
    """xdist controller: keep a worker's waiver error for the exit status and the summary."""
    message = getattr(node, "workeroutput", {}).get(UNMATCHED_WAIVERS)
    if message:
        node.config.stash[STATE_KEY].usage_error = message


def maintenance_until(config: pytest.Config) -> dt.datetime | None:
    """The end of the maintenance window when the run is inside one, else None (for remediation.alerts)."""
    state = config.stash.get(STATE_KEY, None)
    if state is None or state.maintenance_until is None:
        return None
    return state.maintenance_until if state.maintenance_until > dt.datetime.now(dt.UTC) else None


def _waiver_for(state: GateState, nodeid: str) -> Waiver | None:
    return next((w for w in state.waivers if w.matches(nodeid)), None)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    report = yield
    state = item.config.stash[STATE_KEY]
    waiver = _waiver_for(state, item.nodeid) if report.failed and report.when != "teardown" else None
    if waiver is None:
        return report
    expired = waiver.expired(state.today)
    prop = (WAIVER_EXPIRED if expired else WAIVED, waiver.as_dict())
    report.user_properties.append(prop)
    # JUnit writes the teardown report's properties: the item carries the mark into it.
    if prop not in item.user_properties:
        item.user_properties.append(prop)
    if not expired:
        # xfail-like: not counted as failed by pytest or JUnit; the failure text stays in longrepr.
        report.outcome = "skipped"
        report.wasxfail = f"waived: {waiver.reason} (owner {waiver.owner}, until {waiver.expires.isoformat()})"
    return report


@pytest.hookimpl(tryfirst=True)
def pytest_report_teststatus(report: pytest.TestReport, config: pytest.Config):
    if report.skipped and any(key == WAIVED for key, _ in report.user_properties):
        return "waived", "w", "WAIVED"
    return None


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> bool | None:
    """With --confirm N, run a failing check again up to N times and log only the last attempt."""
    attempts_allowed = item.config.stash[STATE_KEY].confirm + 1
    if attempts_allowed == 1:
        return None
    item.ihook.pytest_runtest_logstart(nodeid=item.nodeid, location=item.location)
    for attempt in range(1, attempts_allowed + 1):
        last = attempt == attempts_allowed
        reports = runtestprotocol(item, log=False, nextitem=nextitem if last else None)
        if last or not any(r.failed for r in reports):
            break
    for report in reports:
        report.user_properties.append((ATTEMPTS, attempt))
        item.ihook.pytest_runtest_logreport(report=report)
    item.ihook.pytest_runtest_logfinish(nodeid=item.nodeid, location=item.location)
    return True


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session: pytest.Session) -> None:
    """Apply --exit-severity before other plugins (report writers) read session.exitstatus."""
    state = session.config.stash[STATE_KEY]
    if state.usage_error is not None:
        session.exitstatus = pytest.ExitCode.USAGE_ERROR
        return
    if state.exit_severity is None or session.exitstatus != pytest.ExitCode.TESTS_FAILED:
        return
    # A failure that --remediate fixed (outcome "fixed", nothing made worse) no longer fails the run.
    failed = [c for c in results_of(session.config).with_status("failed") if not _fixed(c)]
    threshold = rank(state.exit_severity)
    if failed and all(c.rank > threshold for c in failed):
        state.downgraded = len(failed)
        session.exitstatus = pytest.ExitCode.OK


def _fixed(check) -> bool:
    return (check.remediation or {}).get("outcome") == "fixed"


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    state = config.stash[STATE_KEY]
    tr = terminalreporter
    if state.usage_error is not None:
        tr.write_line(f"ERROR: {state.usage_error}", red=True, bold=True)
    if state.downgraded:
        tr.write_line(
            f"exit-severity {state.exit_severity}: {state.downgraded} failed check(s) are all below "
            f"{state.exit_severity.upper()}; exit status 0",
            yellow=True,
        )
    results = results_of(config)
    confirmed = [c for c in results.checks.values() if c.attempts > 1]
    for check in confirmed:
        verdict = "failed every attempt" if check.status == "failed" else f"{check.status} on the last attempt"
        tr.write_line(f"confirm: {check.nodeid} {verdict} ({check.attempts} attempts)")
    for check in results.with_status("waived"):
        w = check.waiver
        tr.write_line(f"waived: {check.nodeid} failed, waived until {w['expires']} by {w['owner']}: {w['reason']}")
    for waiver in state.waivers:
        if waiver.expired(state.today):
            tr.write_line(
                f"WARNING: waiver for {waiver.check} (owner {waiver.owner}) expired on {waiver.expires.isoformat()} "
                "and is ignored; renew or remove it",
                yellow=True,
                bold=True,
            )
    if state.maintenance_until is not None:
        active = maintenance_until(config) is not None
        tr.write_line(
            f"maintenance until {state.maintenance_until.isoformat()}: "
            + ("alerts suppressed, checks ran and reported as usual" if active else "window is over, alerts are on")
        )
