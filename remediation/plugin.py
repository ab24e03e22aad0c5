"""The remediation plugin: options, the incident of the run, ``--remediate``, and the report writers.

On the controller (or in a plain run) :class:`IncidentRecorder` reads the
run's :class:`~remediation.results.Results` when the session finishes, runs
``--remediate`` when asked, builds the incident once and has every writer
(``pytest_fossawork_write_report``: JSON) write it as
``<report dir>/incident-<UTC stamp>-<suffix>.<ext>``, refreshing ``latest.<ext>``;
then it prunes the reports of earlier runs to ``--keep-reports``
(:mod:`remediation.reports.history`). The HTML page (:mod:`remediation.reports.html_report`)
is not needed for the verdict: it is rendered and written after the verdict is printed,
as the run is unconfigured. Beside the checks it gathers the targets'
fingerprints (:mod:`remediation.fingerprints`): a failing run's incident names what
changed since the last healthy run, and every run keeps its own for the next.

A report directory the run cannot write (a scheduled job's user that does not own
it) changes none of that verdict: the terminal says it all the same, no fix runs
(it could not be audited), and the run ends with exit 3 and one line naming the
directory, after everything else it printed.
"""

from __future__ import annotations

import atexit
import gc
import json
import os
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from observe.secrets import redact, register
from remediation import hooks, remediate
from remediation.actions.core import AUDIT_LOG
from remediation.contract import is_health_check, marker_fix
from remediation.notify import alerts
from remediation.reports import history
from remediation.reports.incident import build, cause_words
from remediation.results import results_of
from remediation.storage import (
    DEFAULT_REPORT_DIR,
    REPORT_DIR_ENV,
    check_writable,
    evidence_dir,
    report_dir,
    write_atomically,
)

pytest_plugins = ["remediation.results"]

RECORDER = "fossawork-incident"

HELP_REMEDIATE = (
    "After the checks, run the runbook fix of every failing check (each fix once, P1 first; 'escalate' checks "
    "are only reported), then re-run exactly the failed checks and record fixed / still failing."
)
HELP_REPORT_DIR = (
    f"Directory of incident reports, latest.*, the audit log and alert state "
    f"(default: {DEFAULT_REPORT_DIR.name}/ in the repo; env {REPORT_DIR_ENV})."
)
HELP_NO_REPORT = "Write no incident report for this run."
HELP_RECHECK_RESULT = "Write {node id: outcome} of this run as JSON to PATH (used by --remediate's re-check)."
HELP_KEEP_REPORTS = (
    f"Reports of earlier runs to keep in the report directory: days ('7d'), runs ('200'), both, or 'all' "
    f"(default {history.DEFAULT_KEEP}; env {history.KEEP_ENV}). Consecutive healthy runs count as one; the "
    "open incident's reports and latest.* are always kept."
)
HELP_NO_FINGERPRINT = (
    "Do not gather the targets' fingerprints (processes, code, packages, configuration, database, logs, host) "
    "nor name in the incident what changed since the last healthy run."
)
KEEP_KEY = pytest.StashKey[history.Keep]()


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    pluginmanager.add_hookspecs(hooks)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("fossawork", "FossaWork V2 health checks")
    group.addoption("--remediate", action="store_true", default=False, help=HELP_REMEDIATE)
    group.addoption("--report-dir", default=None, metavar="DIR", help=HELP_REPORT_DIR)
    group.addoption("--no-incident-report", action="store_true", default=False, help=HELP_NO_REPORT)
    group.addoption("--recheck-result", default=None, metavar="PATH", help=HELP_RECHECK_RESULT)
    group.addoption("--keep-reports", default=None, metavar="LIMIT", help=HELP_KEEP_REPORTS)
    group.addoption("--no-fingerprint", action="store_true", default=False, help=HELP_NO_FINGERPRINT)


@pytest.hookimpl(trylast=True)
def pytest_fossawork_resolve_fix(item: pytest.Item):
    """Default fix mapping: the check's own ``@pytest.mark.fix``."""
    return marker_fix(item)


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    # The ~60,000 objects a run builds (pytest's, the plugins', the observations) live until the process exits,
    # where CPython's finalization walks them all again in its last collections: ~30 ms of a 0.4 s P1 verdict,
    # after every output is written. Frozen at exit, they are left to the OS, which takes their memory back
    # anyway; what is still cyclic garbage by then (a few sockets and locks) is closed with the process too.
    # Registered once per process, however many runs it holds (pytester's in-process runs).
    atexit.unregister(gc.freeze)
    atexit.register(gc.freeze)
    if hasattr(config, "workerinput"):
        return
    from remediation.reports import json_report

    config.stash[KEEP_KEY] = keep_reports(config)

    recorder = IncidentRecorder(config)
    config.pluginmanager.register(recorder, RECORDER)
    # Named so a team can replace one with `-p no:fossawork-json` or unregister it in conftest.py.
    config.pluginmanager.register(remediate, "fossawork-remediate")
    config.pluginmanager.register(json_report, "fossawork-json")


def keep_reports(config: pytest.Config) -> history.Keep:
    """--keep-reports, else $FOSSAWORK_KEEP_REPORTS, else the default; a bad value is a UsageError naming its source."""
    raw, source = config.getoption("keep_reports"), "--keep-reports"
    if raw is None:
        raw, source = os.environ.get(history.KEEP_ENV), f"environment variable {history.KEEP_ENV}"
    if raw is None:
        return history.parse_keep(history.DEFAULT_KEEP, "the default")
    try:
        return history.parse_keep(raw, source)
    except ValueError as exc:
        raise pytest.UsageError(str(exc)) from None


def pytest_report_header(config: pytest.Config) -> list[str]:
    """Which deployment this run checks, from which targets file, in which layout: the first thing to verify."""
    from fixtures.target import targets

    return [
        f"target: {name} (profile file {Path(tp.path).resolve()}, layout {layout_of(tp.declared)})"
        for name, tp in targets(config).items()
    ]


def layout_of(profile) -> str:
    """The sandbox layout a profile starts; for a real deployment, the one its health route belongs to.

    FossaWork V2 as deployed serves ``/health`` (layout ``v2``); the runbook's ``/api/health`` is ``runbook``.
    """
    if profile.sandbox:
        return profile.sandbox
    return {"/health": "v2", "/api/health": "runbook"}.get(profile.endpoints.health, "custom")


def pytest_sessionstart(session: pytest.Session) -> None:
    """Secrets the declared profile can reach are masked from the first report on (on xdist workers too)."""
    from fixtures.target import TARGETS_KEY

    for tp in session.config.stash.get(TARGETS_KEY, {}).values():
        register(tp.declared.secret("password_env"))
        register(tp.declared.secret("jwt_secret_env"))


def pytest_unconfigure(config: pytest.Config) -> None:
    recorder = config.pluginmanager.get_plugin(RECORDER)
    if recorder is not None:
        recorder.write_page()
    line = recorder.last_line if recorder is not None else None
    if line:
        # The last line of the run (after pytest's own summary), on stderr: what a journal or a cron log shows last.
        sys.stdout.flush()
        sys.stderr.write(line + "\n")
    for name in (RECORDER, "fossawork-remediate", "fossawork-json"):
        plugin = config.pluginmanager.get_plugin(name)
        if plugin is not None:
            config.pluginmanager.unregister(plugin)


class IncidentRecorder:
    """Controller-side: runs --remediate, builds the incident from the run's results, has it written and pruned."""

    def __init__(self, config: pytest.Config):
        self.config = config
        self.started = datetime.now(UTC)
        self.run_id = history.new_run_id(self.started)
        self.report_dir = report_dir(config.getoption("report_dir"))
        self.incident: dict | None = None
        self.remediation: dict | None = None
        self.written: list[Path] = []
        self.pruned: list[history.Run] = []
        self.page: Path | None = None  # incident-<run>.html once the rest is written; written itself by write_page
        self.session: pytest.Session | None = None
        opt = config.getoption
        quiet = opt("runbook") or opt("collectonly") or opt("no_incident_report")
        # The fingerprints live beside the reports: a run that writes none (a --remediate re-check) keeps none.
        self.fingerprinting = not quiet and not opt("no_fingerprint")
        self._fingerprints = None
        self.unwritable: OSError | None = None  # why the report directory cannot be written
        self.last_line: str | None = None  # the run's last line, when it is that
        if not quiet:
            # Known before anything is written: then no fix runs (it could not be audited), and the run ends
            # with exit 3 after its verdict.
            try:
                check_writable(self.report_dir)
            except OSError as exc:
                self.unwritable = exc

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        """Health checks collected: the fingerprints are gathered while they run (under xdist the controller
        collects nothing: they are gathered as the run ends)."""
        if self.fingerprinting and any(is_health_check(item) for item in session.items):
            self.fingerprints().start()

    def wants_report(self) -> bool:
        """An incident is written only for runs that checked something (not for self-tests or --runbook)."""
        opt = self.config.getoption
        checked = results_of(self.config).health_checks()
        return bool(checked) and not (opt("no_incident_report") or opt("runbook") or opt("collectonly"))

    # -- session end ---------------------------------------------------------
    @pytest.hookimpl(wrapper=True)
    def pytest_sessionfinish(self, session: pytest.Session):
        # Before every other implementation: the fixes run and the re-check records each check's outcome.
        if self.wants_report():
            self._register_target_secrets()
            if self.config.getoption("remediate"):
                self.remediation = remediate.remediate(self.config, self, results_of(self.config).health_checks())
                # Only "fixed" counts as fixed: the run exits 0 when remediation left nothing failing.
                if (
                    session.exitstatus == pytest.ExitCode.TESTS_FAILED
                    and self.remediation["severity_after"] == "healthy"
                ):
                    session.exitstatus = pytest.ExitCode.OK
        self.session = session
        try:
            return (yield)
        finally:
            self._finish()
            self._end()

    def _end(self) -> None:
        """The last line and exit 3 when a report could not be written (also when the page fails, later)."""
        self.last_line = self._unwritable_line()
        # Exit 3, not the checks' 0 or 1: a scheduler must not read "reports missing" as "healthy".
        if self.last_line and self.session.exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED):
            self.session.exitstatus = pytest.ExitCode.INTERNAL_ERROR

    def _unwritable_line(self) -> str | None:
        """The run's last line when its report, fingerprints or alert state could not be written."""
        exc = (self.unwritable if self.wants_report() else None) or alerts.state_error(self.config)
        if exc is None:
            return None
        where, reason = self.report_dir, exc.strerror or exc.__class__.__name__
        # The file or folder inside the directory that failed, when it is not the directory itself.
        failed = exc.filename2 or exc.filename
        if isinstance(failed, str) and Path(failed) != where and Path(failed).is_relative_to(where):
            reason += f": {failed}"
        return f"fossawork-health: cannot write reports to {where} ({reason}); the checks' verdict above stands"

    # A second pytest_sessionfinish (pytest finds hooks by their "pytest_" prefix, specname by the spec's name).
    @pytest.hookimpl(specname="pytest_sessionfinish")
    def pytest_sessionfinish_build(self, session: pytest.Session) -> None:
        """Build the incident after the alerts (tryfirst) opened theirs: "failing since" names the alert this very
        run opened."""
        if self.wants_report():
            self.incident = self._build(results_of(self.config).health_checks(), self.remediation)

    def _register_target_secrets(self) -> None:
        """A sandbox's secrets are known only once it runs: register them before anything is written."""
        from fixtures.target import targets

        for tp in targets(self.config).values():
            if tp.sandbox is not None:
                register(tp.profile().secret("password_env"))
                register(tp.profile().secret("jwt_secret_env"))

    def target_info(self) -> dict:
        """Name, description and file of each target of the run (never values of secrets)."""
        from fixtures.target import targets

        return {
            name: {"name": name, "description": tp.declared.description, "source": str(tp.path)}
            for name, tp in targets(self.config).items()
        }

    def _build(self, checks, remediation: dict | None) -> dict:
        failing = {c.target for c in checks if c.outcome == "failed"}
        return build(
            run_id=self.run_id,
            started=self.started,
            finished=datetime.now(UTC),
            args=[redact(a) for a in self.config.invocation_params.args],
            targets=self.target_info(),
            results=checks,
            remediation=remediation,
            audit=self._audit_entries(),
            evidence=str(evidence) if (evidence := evidence_dir(self.report_dir, self.run_id)).is_dir() else None,
            since=self._failing_since(),
            changed=self.fingerprints().sections(failing) if self.fingerprinting and failing else [],
        )

    def _audit_entries(self) -> list[dict]:
        """This run's entries of the audit log, from the rotated generation too when the log moved during the run."""
        lines: list[str] = []
        for name in (AUDIT_LOG, AUDIT_LOG + ".1"):
            try:
                lines = (self.report_dir / name).read_text(encoding="utf-8").splitlines() + lines
            except OSError:
                pass
            if lines and self.run_id not in lines[0]:
                break  # the oldest line read predates this run: the rotated generation holds none of its entries
        entries = [json.loads(line) for line in lines if self.run_id in line]
        return [e for e in entries if e.get("run_id") == self.run_id]

    def _open_alerts(self) -> dict:
        """The open alerts of ``alert-state.json`` in the report directory (empty when alerting is not used)."""
        return alerts.read_state(self.report_dir / alerts.STATE_FILE)[0]

    def _failing_since(self) -> dict[tuple[str, str], str]:
        """(target, node id) -> when its open alert started, as an ISO 8601 UTC time."""
        since = {}
        for alert in self._open_alerts().values():
            try:
                started = datetime.fromisoformat(alert["since"]).astimezone(UTC)
                since[(alert["target"], alert["check"])] = started.isoformat()
            except (KeyError, TypeError, ValueError):
                continue  # an entry this version cannot read says nothing about when the failure began
        return since

    def _finish(self) -> None:
        recheck = self.config.getoption("recheck_result")
        if recheck:
            outcomes = {c.nodeid: c.outcome for c in results_of(self.config).health_checks()}
            write_atomically(Path(recheck), json.dumps(outcomes))
        if self.incident is not None and self.unwritable is None:
            try:
                self._write()
            except OSError as exc:
                self.unwritable = exc

    def _write(self) -> None:
        """The incident in every format, latest.*, the fingerprints to keep, and the history pruned."""
        stem = f"incident-{self.run_id}"
        results = self.config.hook.pytest_fossawork_write_report(
            config=self.config, incident=self.incident, report_dir=self.report_dir, stem=stem
        )
        self.written = [Path(p) for p in results if p]
        for path in self.written:
            write_atomically(path.with_name("latest" + path.suffix), path.read_bytes())
        if self.fingerprinting:
            self.fingerprints().keep(self._healthy_targets())
        if self.written:
            keep = self.config.stash[KEEP_KEY]
            now = datetime.now(UTC)
            self.pruned = history.prune(self.report_dir, keep, now, self.run_id, self._open_alerts())
        self.page = self.report_dir / f"{stem}.html"

    def write_page(self) -> None:
        """The HTML page of the incident and latest.html, after the verdict and everything else is printed; a page
        that cannot be written ends the run as any other report does (its line, exit 3)."""
        if self.page is None or self.unwritable is not None:
            return
        from remediation.reports import html_report

        page = html_report.page(self.incident, results_of(self.config).health_checks())
        try:
            for path in (self.page, self.page.with_name("latest.html")):
                write_atomically(path, page)
        except OSError as exc:
            self.unwritable = exc
            self._end()

    def fingerprints(self):
        """This run's :class:`~remediation.fingerprints.Fingerprints` (made once the targets are known, after
        pytest_configure; imported here, so a --no-fingerprint run does not even load it)."""
        if self._fingerprints is None:
            from fixtures.target import targets
            from remediation.fingerprints import Fingerprints

            self._fingerprints = Fingerprints(self.report_dir, targets(self.config), self.run_id)
        return self._fingerprints

    def _healthy_targets(self) -> set[str]:
        """Targets with a passing check and no failing one in this run (before any --remediate)."""
        checks = results_of(self.config).health_checks()
        passed = {c.target for c in checks if c.outcome == "passed"}
        return passed - {c.target for c in checks if c.outcome == "failed"}

    def pytest_terminal_summary(self, terminalreporter) -> None:
        """The incident after the results: pytest has ended the progress line, also under xdist."""
        if self.incident is None:
            return
        tr = terminalreporter
        tr.write_sep("-", f"incident {self.incident['severity'].upper()}: {self.incident['run_id']}")
        for line in summary_lines(self.incident):
            tr.write_line(line)
        if self.incident["changed"]:
            from remediation.reports.changes import terminal_lines

            for line in terminal_lines(self.incident["changed"]):
                tr.write_line(line)
        for path in self.written + ([self.page] if self.page else []):
            tr.write_line(f"incident report: {path}")
        if self.incident["evidence"]:
            tr.write_line(f"evidence kept before the fixes: {self.incident['evidence']}")
        if self.pruned:
            tr.write_line(
                f"report history: removed the reports of {len(self.pruned)} earlier run(s) "
                f"(keeping {self.config.stash[KEEP_KEY]}, see --keep-reports)"
            )


def summary_lines(incident: dict) -> list[str]:
    """Terminal lines of the incident: how soon to respond, each failure's fix (dry run first) and, after
    --remediate, its outcome; then what remediation leaves open."""
    lines = [incident["respond"]] if incident["response_deadline"] else []
    for na in incident["not_applicable"]:
        lines.append(f"N/A {na['id']}: {na['reason']}")
    for cause in incident["root_causes"]:
        lines.append(
            f"root cause: {cause['severity'].upper()} {cause['id']} ({cause_words(cause)}): {cause['message']}"
        )
    for failure in incident["failures"]:
        fix = failure["fix"]
        line = f"{failure['severity'].upper()} {failure['id']}"
        by = f" the fix of its cause, {fix['cause']}:" if fix["cause"] else ""
        if fix["escalate"]:
            lines.append(f"{line}:{by} escalate, a human decides")
        else:
            lines += [f"{line}:{by}", f"    dry run: {fix['dry_run_command']}", f"    then:    {fix['command']}"]
        done = failure["remediation"]
        if done:
            lines.append(f"    remediation: {done['outcome']}" + (f" ({done['reason']})" if done["reason"] else ""))
    remediation = incident["remediation"]
    if remediation["requested"]:
        counts = ", ".join(f"{n} {name}" for name, n in remediation.get("counts", {}).items() if n)
        lines.append(f"remediation: {remediation['status']}" + (f"; {counts}" if counts else ""))
        if "severity_after" in remediation:
            lines.append(f"after remediation: {remediation['severity_after'].upper()}")
    return lines
