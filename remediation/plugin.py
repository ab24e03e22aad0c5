"""The remediation plugin: fix resolution per failing check, incident reports, and ``--remediate``.

On every process (xdist workers included) each health check's report gets
its catalog entry in ``report.user_properties`` (so it crosses xdist) and its
failure text redacted. Only on the controller does :class:`IncidentRecorder`
gather the results and, when the run checked something, write
``<report dir>/incident-<UTC stamp>-<suffix>.json`` / ``.html`` and refresh
``latest.json`` / ``latest.html``.
"""

from __future__ import annotations

import json
import os
import secrets
from datetime import UTC, datetime
from pathlib import Path

import pytest

from observe.secrets import redact, register
from remediation import hooks, runner
from remediation.catalog import describe, is_health_check, marker_fix
from remediation.incident import build
from remediation.safety import AUDIT_LOG, DEFAULT_REPORT_DIR

CHECK_PROPERTY = "fossawork_check"
RECORDER = "fossawork-incident"

HELP_REMEDIATE = (
    "After the checks, run the runbook fix of every failing check (each fix once, P1 first; 'escalate' checks "
    "are only reported), then re-run exactly the failed checks and record fixed / still failing."
)
HELP_REPORT_DIR = (
    f"Directory of incident reports, latest.*, the audit log and locks "
    f"(default: {DEFAULT_REPORT_DIR.name}/ in the repo; env FOSSAWORK_REPORT_DIR)."
)
HELP_NO_REPORT = "Write no incident report for this run."
HELP_RECHECK_RESULT = "Write {node id: outcome} of this run as JSON to PATH (used by --remediate's re-check)."

_CHECK_KEY = pytest.StashKey[dict]()


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    pluginmanager.add_hookspecs(hooks)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("fossawork", "FossaWork V2 health checks")
    group.addoption("--remediate", action="store_true", default=False, help=HELP_REMEDIATE)
    group.addoption("--report-dir", default=None, metavar="DIR", help=HELP_REPORT_DIR)
    group.addoption("--no-incident-report", action="store_true", default=False, help=HELP_NO_REPORT)
    group.addoption("--recheck-result", default=None, metavar="PATH", help=HELP_RECHECK_RESULT)


@pytest.hookimpl(trylast=True)
def pytest_fossawork_resolve_fix(item: pytest.Item):
    """Default fix mapping: the check's own ``@pytest.mark.fix``."""
    return marker_fix(item)


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    # tryfirst: the HTML path must be set before pytest-html's own pytest_configure reads it.
    if hasattr(config, "workerinput"):
        return
    from remediation import report_html, report_json

    config.pluginmanager.register(IncidentRecorder(config), RECORDER)
    # Named so a team can replace one with `-p no:fossawork-html` or unregister it in conftest.py.
    config.pluginmanager.register(runner, "fossawork-remediate")
    config.pluginmanager.register(report_json, "fossawork-json")
    config.pluginmanager.register(report_html.IncidentHtml(config), "fossawork-html")


def pytest_sessionstart(session: pytest.Session) -> None:
    """Secrets the declared profile can reach are masked from the first report on (on xdist workers too)."""
    from fixtures.target import TARGETS_KEY

    for tp in session.config.stash.get(TARGETS_KEY, {}).values():
        register(tp.declared.secret("password_env"))
        register(tp.declared.secret("jwt_secret_env"))


def pytest_unconfigure(config: pytest.Config) -> None:
    for name in (RECORDER, "fossawork-remediate", "fossawork-json", "fossawork-html"):
        plugin = config.pluginmanager.get_plugin(name)
        if plugin is not None:
            config.pluginmanager.unregister(plugin)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    report = yield
    if is_health_check(item):
        if _CHECK_KEY not in item.stash:
            from fixtures.target import item_target

            item.stash[_CHECK_KEY] = {**describe(item).as_dict(), "target": item_target(item)}
        report.user_properties.append((CHECK_PROPERTY, item.stash[_CHECK_KEY]))
        _redact_report(report)
    return report


def _redact_report(report: pytest.TestReport) -> None:
    """Mask secrets in the failure text and captured output before any reporter (or xdist) sees them."""
    if report.failed and report.longrepr is not None:
        text = str(report.longrepr)
        if redact(text) != text:
            report.longrepr = redact(text)
    report.sections = [(title, redact(content)) for title, content in report.sections]


def check_of(report) -> dict | None:
    """The catalog entry a health check's report carries, or None for other tests."""
    return dict(report.user_properties).get(CHECK_PROPERTY)


def incident_of(config: pytest.Config) -> dict | None:
    """The run's incident record once built (for report writers), else None."""
    recorder = config.pluginmanager.get_plugin(RECORDER)
    return recorder.incident if recorder else None


class IncidentRecorder:
    """Controller-side: gathers check results, runs --remediate, has the incident written."""

    def __init__(self, config: pytest.Config):
        self.config = config
        self.started = datetime.now(UTC)
        self.run_id = f"{self.started:%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"
        option = config.getoption("report_dir") or os.environ.get("FOSSAWORK_REPORT_DIR")
        self.report_dir = Path(option) if option else DEFAULT_REPORT_DIR
        self.results: dict[str, dict] = {}
        self.incident: dict | None = None
        self.written: list[Path] = []
        # pytest-html writes incident-<run>.html itself; runs that check nothing drop it (see collection_finish).
        opt = config.getoption
        self.user_html = opt("htmlpath", None)
        self.html_path: Path | None = None
        quiet = opt("runbook") or opt("collectonly") or opt("no_incident_report")
        if not self.user_html and not quiet and config.pluginmanager.has_plugin("html"):
            self.html_path = self.report_dir / f"incident-{self.run_id}.html"
            config.option.htmlpath = str(self.html_path)
            config.option.self_contained_html = True

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        """No health check collected (e.g. ``pytest tests/``): no HTML report either."""
        if self.html_path is not None and not any(is_health_check(item) for item in session.items):
            for plugin in self.config.pluginmanager.get_plugins():
                if type(plugin).__module__.startswith("pytest_html") and hasattr(plugin, "_report_path"):
                    self.config.pluginmanager.unregister(plugin)
            self.html_path = None

    # -- results -----------------------------------------------------------
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        check = check_of(report)
        if check is None:
            return
        result = self.results.setdefault(report.nodeid, {"check": check, "outcome": None, "phase": "", "message": ""})
        if report.failed and result["outcome"] != "failed":
            result.update(outcome="failed", phase=report.when, message=redact(report.longreprtext))
        elif report.skipped and result["outcome"] is None:
            reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
            result.update(outcome="skipped", phase=report.when, message=redact(reason))
        elif report.passed and report.when == "call" and result["outcome"] is None:
            result.update(outcome="passed", phase="call")

    def _results(self) -> list[dict]:
        return [{**r, "outcome": r["outcome"] or "skipped"} for r in self.results.values()]

    def wants_report(self) -> bool:
        """An incident is written only for runs that checked something (not for self-tests or --runbook)."""
        opt = self.config.getoption
        return bool(self.results) and not (opt("no_incident_report") or opt("runbook") or opt("collectonly"))

    # -- session end ---------------------------------------------------------
    @pytest.hookimpl(wrapper=True)
    def pytest_sessionfinish(self, session: pytest.Session):
        # Before the other implementations: pytest-html renders its summary from self.incident.
        if self.wants_report():
            self._register_target_secrets()
            remediation = (
                runner.remediate(self.config, self, self._results()) if self.config.getoption("remediate") else None
            )
            self.incident = self._build(remediation)
        try:
            return (yield)
        finally:
            self._finish()

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

    def _build(self, remediation: dict | None) -> dict:
        return build(
            run_id=self.run_id,
            started=self.started,
            finished=datetime.now(UTC),
            args=[redact(a) for a in self.config.invocation_params.args],
            targets=self.target_info(),
            results=self._results(),
            remediation=remediation,
            audit=self._audit_entries(),
        )

    def _audit_entries(self) -> list[dict]:
        try:
            lines = (self.report_dir / AUDIT_LOG).read_text(encoding="utf-8").splitlines()
        except OSError:
            return []
        entries = [json.loads(line) for line in lines if self.run_id in line]
        return [e for e in entries if e.get("run_id") == self.run_id]

    def _finish(self) -> None:
        recheck = self.config.getoption("recheck_result")
        if recheck:
            Path(recheck).write_text(json.dumps({k: r["outcome"] for k, r in self.results.items()}))
        if self.incident is not None:
            stem = f"incident-{self.run_id}"
            results = self.config.hook.pytest_fossawork_write_report(
                config=self.config, incident=self.incident, report_dir=self.report_dir, stem=stem
            )
            self.written = [Path(p) for p in results if p]
            for path in self.written:
                publish_latest(path)
        elif self.html_path is not None and self.html_path.exists():
            self.html_path.unlink()  # pytest-html wrote it for us, but this run has no incident
        tr = self.config.pluginmanager.get_plugin("terminalreporter")
        if tr is not None and self.incident is not None:
            tr.ensure_newline()
            tr.write_sep("-", f"incident {self.incident['severity'].upper()}: {self.incident['run_id']}")
            for line in runner.summary_lines(self.incident):
                tr.write_line(line)
            for path in self.written:
                tr.write_line(f"incident report: {path}")


def publish_latest(path: Path) -> Path:
    """Copy ``path`` to ``latest<ext>`` beside it with an atomic replace (readers never see half a file)."""
    latest = path.with_name("latest" + path.suffix)
    tmp = path.with_name(f".latest-{secrets.token_hex(4)}{path.suffix}")
    tmp.write_bytes(path.read_bytes())
    os.replace(tmp, latest)
    return latest
