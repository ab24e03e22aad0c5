"""The catalog of health checks: marker enforcement at collection, ``pytest --runbook``, and RUNBOOK.md.

Every test under ``health/`` must carry exactly one severity marker
(p1..p4), exactly one component marker and ``@pytest.mark.fix(script,
issue_type="", kb="")`` naming a known script and issue type; otherwise
collection stops with one line per offending test (exit 4).

``pytest --runbook`` prints the catalog (id, component, severity, symptom,
fix) without running anything; ``python -m remediation.catalog > RUNBOOK.md``
writes the Markdown version kept at the repo root.
"""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import pytest

from remediation import knowledge
from remediation.scripts import ESCALATE, SCRIPTS, Fix, command

ROOT = Path(__file__).resolve().parent.parent
HEALTH_DIR = "health"
SEVERITIES = ("p1", "p2", "p3", "p4")
COMPONENTS = ("backend", "frontend", "database", "auth", "performance", "automation")
# The runbook's response times, in minutes (P1 is immediate).
RESPONSE_MINUTES = {"p1": 0, "p2": 15, "p3": 60, "p4": 240}
SEVERITY_TITLES = {"p1": "Critical", "p2": "High", "p3": "Medium", "p4": "Low"}

HELP_RUNBOOK = "Print the catalog of health checks (id, component, severity, symptom, fix) without running them."
HELP_RUNBOOK_FORMAT = "Format of --runbook: 'text' (default) or 'markdown' (the body of RUNBOOK.md)."
FORMATS = ("text", "markdown")
CHECKS_KEY = pytest.StashKey[list]()


@dataclass(frozen=True)
class Check:
    """What the catalog and the incident report know about one health check."""

    id: str
    component: str
    severity: str
    symptom: str
    script: str
    issue_type: str
    kb: str

    @property
    def fix(self) -> Fix:
        return Fix(self.script, self.issue_type, self.kb)

    @property
    def fix_label(self) -> str:
        """``script issue_type`` as an engineer says it, plus the knowledge-base entry when one is named."""
        label = " ".join(filter(None, (self.script, self.issue_type)))
        return f"{label} (kb: {self.kb})" if self.kb else label

    def as_dict(self) -> dict:
        return asdict(self)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("fossawork", "FossaWork V2 health checks")
    group.addoption("--runbook", action="store_true", default=False, help=HELP_RUNBOOK)
    group.addoption("--runbook-format", default="text", choices=FORMATS, help=HELP_RUNBOOK_FORMAT)


def is_health_check(item: pytest.Item) -> bool:
    """Whether ``item`` lives under ``health/`` of the rootdir (the only tests the contract applies to)."""
    try:
        parts = item.path.relative_to(item.config.rootpath).parts
    except ValueError:
        return False
    return bool(parts) and parts[0] == HEALTH_DIR


def marker_fix(item: pytest.Item) -> Fix | None:
    """The fix named by the item's ``fix`` marker; a pytest.param's own mark wins over the function's."""
    callspec = getattr(item, "callspec", None)
    marks = [m for m in (callspec.marks if callspec else []) if m.name == "fix"]
    mark = marks[-1] if marks else item.get_closest_marker("fix")
    if mark is None:
        return None
    args = dict(zip(("script", "issue_type", "kb"), mark.args, strict=False)) | mark.kwargs
    return Fix(**{k: str(v) for k, v in args.items() if k in Fix._fields})


def problems(item: pytest.Item) -> list[str]:
    """What the item lacks to be a health check: missing or extra markers, unknown fix or kb entry."""
    found = []
    names = {m.name for m in item.iter_markers()}
    for kind, choices in (("severity", SEVERITIES), ("component", COMPONENTS)):
        have = sorted(names.intersection(choices))
        if not have:
            found.append(f"missing a {kind} marker (one of {', '.join(choices)})")
        elif len(have) > 1:
            found.append(f"has {len(have)} {kind} markers ({', '.join(have)}), expected exactly one")
    try:
        fix = marker_fix(item)
    except TypeError as exc:
        return [*found, f"fix marker has bad arguments ({exc}); use @pytest.mark.fix(script, issue_type='', kb='')"]
    if fix is None:
        found.append("missing a fix marker: @pytest.mark.fix(script, issue_type='', kb='')")
    else:
        if fix.problem():
            found.append(f"fix marker: {fix.problem()}")
        if fix.kb and fix.kb not in knowledge.names():
            found.append(f"fix marker: unknown knowledge-base entry {fix.kb!r} (known: {', '.join(knowledge.names())})")
    return found


def describe(item: pytest.Item) -> Check:
    """The catalog entry of a valid health check; the fix comes from the ``pytest_fossawork_resolve_fix`` hook."""
    names = {m.name for m in item.iter_markers()}
    hook = getattr(item.config.hook, "pytest_fossawork_resolve_fix", None)
    fix = (hook(item=item) if hook else None) or marker_fix(item)
    doc = (getattr(item, "function", None).__doc__ or "").strip() if hasattr(item, "function") else ""
    return Check(
        id=item.nodeid,
        component=next(c for c in COMPONENTS if c in names),
        severity=next(s for s in SEVERITIES if s in names),
        symptom=doc.splitlines()[0].strip() if doc else "(no symptom documented)",
        script=fix.script,
        issue_type=fix.issue_type,
        kb=fix.kb,
    )


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Refuse to run a health check that breaks the marker contract; runs before -m/-k deselect anything."""
    errors = []
    for item in items:
        if is_health_check(item):
            errors += [f"{item.nodeid}: {problem}" for problem in problems(item)]
    if errors:
        raise pytest.UsageError(
            f"{len(errors)} health check marker problem(s) (see the contract in RUNBOOK.md):\n" + "\n".join(errors)
        )


def pytest_collection_finish(session: pytest.Session) -> None:
    # Also reached after pytest_collection_modifyitems refused the run: describe only valid checks.
    checks = [describe(item) for item in session.items if is_health_check(item) and not problems(item)]
    session.config.stash[CHECKS_KEY] = checks
    if session.config.getoption("runbook"):
        fmt = session.config.getoption("runbook_format")
        text = render_markdown(checks) if fmt == "markdown" else render_text(checks)
        tr = session.config.pluginmanager.get_plugin("terminalreporter")
        if tr is not None:
            tr.write("\n" + text)
        else:
            sys.stdout.write(text)


@pytest.hookimpl(tryfirst=True)
def pytest_runtestloop(session: pytest.Session) -> bool | None:
    """With --runbook nothing runs: the catalog was printed at collection."""
    return True if session.config.getoption("runbook") else None


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session) -> None:
    # Printing the catalog is a success even when it lists no checks (pytest would say exit 5).
    if session.config.getoption("runbook") and session.exitstatus == pytest.ExitCode.NO_TESTS_COLLECTED:
        session.exitstatus = pytest.ExitCode.OK


def checks_of(config: pytest.Config) -> list[Check]:
    """The health checks collected in this run (empty on an xdist controller, which collects nothing)."""
    return config.stash.get(CHECKS_KEY, [])


def _sorted(checks: list[Check]) -> list[Check]:
    return sorted(checks, key=lambda c: (c.severity, COMPONENTS.index(c.component), c.id))


def render_text(checks: list[Check]) -> str:
    """The catalog as terminal text: one block per check, most severe first."""
    lines = [f"FossaWork health checks: {len(checks)} (catalog only, nothing was run)"]
    for check in _sorted(checks):
        lines += [
            f"{check.id}",
            f"    {check.severity.upper()} {check.component}: {check.symptom}",
            f"    fix: {check.fix_label}",
        ]
    return "\n".join(lines) + "\n"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_markdown(checks: list[Check]) -> str:
    """RUNBOOK.md: severity levels, the checks, the fix scripts and the knowledge base, generated from the code."""
    kb = knowledge.load()
    out = [
        "# FossaWork V2 runbook: health checks, fixes and knowledge base",
        "",
        "<!-- Generated by `python -m remediation.catalog > RUNBOOK.md`; do not edit by hand. -->",
        "",
        "Run the checks with `pytest --target NAME`; list them with `pytest --runbook`. A failing run writes",
        "`reports/incident-<UTC timestamp>.json` / `.html` (and `reports/latest.*`); `--remediate` runs the",
        "fixes below and re-checks.",
        "",
        "## Severity levels",
        "",
        "| Level | Meaning | Respond within |",
        "| --- | --- | --- |",
    ]
    for level in SEVERITIES:
        minutes = RESPONSE_MINUTES[level]
        due = "immediately" if not minutes else (f"{minutes} min" if minutes < 60 else f"{minutes // 60} h")
        out.append(f"| {level.upper()} | {SEVERITY_TITLES[level]} | {due} |")
    out += ["", f"## Checks ({len(checks)})", ""]
    if checks:
        out += ["| Severity | Component | Check | Symptom | Fix |", "| --- | --- | --- | --- | --- |"]
        for c in _sorted(checks):
            cells = (c.severity.upper(), c.component, f"`{_cell(c.id)}`", _cell(c.symptom), _cell(c.fix_label))
            out.append("| " + " | ".join(cells) + " |")
    else:
        out.append("No checks collected yet.")
    out += [
        "",
        "## Fix scripts",
        "",
        "Dry-run by default (each action is printed, nothing changes); `--execute` acts. Every action is appended",
        "to `reports/remediation-audit.jsonl`; one remediation runs at a time per target.",
        "",
    ]
    for script, types in [*SCRIPTS.items(), (ESCALATE, ("",))]:
        for issue_type in types:
            entry = knowledge.entry(script, issue_type)
            cmd = command(script, issue_type, "targets.toml", "local")
            out += [
                f"### {entry['id']}: {entry['title']}",
                "",
                f"`{cmd}`" if cmd else "Nothing is run: a human decides.",
                "",
                *[f"- {step}" for step in entry["solutions"]],
                *[f"- Differs from the runbook: {note}" for note in entry["unsafe_in_runbook"]],
                "",
            ]
    out += ["## Common issues", ""]
    for name, entry in kb["common_issues"].items():
        out += [f"### {name}: {entry['title']}", ""]
        for heading, key in (("Symptoms", "symptoms"), ("Causes", "causes"), ("Solutions", "solutions")):
            out += [f"{heading}:", "", *[f"- {line}" for line in entry[key]], ""]
        out += [*[f"- Differs from the runbook: {note}" for note in entry["unsafe_in_runbook"]], ""]
    return "\n".join(out).rstrip() + "\n"


class _Collector:
    """Gathers the catalog of a collect-only run started by :func:`collect`."""

    def __init__(self) -> None:
        self.checks: list[Check] = []

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        self.checks = checks_of(session.config)


def collect(args: list[str] | None = None) -> tuple[int, list[Check]]:
    """Collect the repo's health checks without running them: (pytest exit code, checks)."""
    collector = _Collector()
    code = pytest.main(
        [
            "--collect-only",
            "-p",
            "no:terminal",
            "-p",
            "no:cacheprovider",
            "--rootdir",
            str(ROOT),
            "-c",
            str(ROOT / "pyproject.toml"),
            *(args or [str(ROOT / HEALTH_DIR)]),
        ],
        plugins=[collector],
    )
    return int(code), collector.checks


def main() -> int:
    """``python -m remediation.catalog [pytest args] > RUNBOOK.md``."""
    code, checks = collect(sys.argv[1:] or None)
    if code not in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED):
        print(f"collection failed (pytest exit code {code}); RUNBOOK.md not generated", file=sys.stderr)
        return code
    sys.stdout.write(render_markdown(checks))
    return 0


if __name__ == "__main__":
    # Run the imported module's main: the plugin loaded by conftest.py is remediation.catalog, not __main__.
    from remediation.catalog import main as catalog_main

    sys.exit(catalog_main())
