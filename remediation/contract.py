"""The marker contract of a health check, declared once and registered by the plugin.

Every test under ``health/`` carries exactly one severity marker (p1..p4),
exactly one component marker (given once per module as ``pytestmark``) and
``@pytest.mark.fix(script, issue_type="", kb="")`` naming a registered fix
type; otherwise collection stops with one line per offending test (exit 4).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import pytest

from remediation import knowledge
from remediation.scripts import Fix

HEALTH_DIR = "health"
# The runbook's levels: marker -> (title, what it covers, response time in minutes; P1 is immediate).
SEVERITY_LEVELS = {
    "p1": (
        "Critical",
        "system completely down, database corruption, security breach, data loss, authentication system failure",
        0,
    ),
    "p2": (
        "High",
        "partial system outage, severe performance degradation, form automation failures >50%, database "
        "connectivity issues",
        15,
    ),
    "p3": (
        "Medium",
        "individual feature failures, performance degradation <50%, non-critical errors, user experience issues",
        60,
    ),
    "p4": ("Low", "cosmetic issues, minor performance degradation, enhancement requests, documentation issues", 240),
}
COMPONENT_MEANINGS = {
    "backend": "the FastAPI/uvicorn backend API, its process and its logs.",
    "frontend": "the Vite/TypeScript frontend, its dev server and its build.",
    "database": "the SQLite database file, its integrity, locks and size.",
    "auth": "JWT authentication, login, token validation and stored credentials.",
    "performance": "system resources, latency, log sizes and services.",
    "automation": "Playwright browser automation against WorkFossa and its logs.",
}
FIX_MARKER = (
    "fix(script, issue_type='', kb=''): the runbook's fix for this check: script name (or 'escalate'), its issue "
    "type, and the knowledge-base entry."
)
SEVERITIES = tuple(SEVERITY_LEVELS)
COMPONENTS = tuple(COMPONENT_MEANINGS)
SEVERITY_TITLES = {level: title for level, (title, _, _) in SEVERITY_LEVELS.items()}
RESPONSE_MINUTES = {level: minutes for level, (_, _, minutes) in SEVERITY_LEVELS.items()}


def response_time(minutes: int) -> str:
    """'immediately', '15 minutes', '1 hour', '4 hours': the runbook's words for a response time."""
    if not minutes:
        return "immediately"
    return f"{minutes} minutes" if minutes < 60 else f"{minutes // 60} hour{'s' if minutes > 60 else ''}"


def marker_lines() -> list[str]:
    """The ``markers`` ini lines of every marker the contract knows, for ``pytest --markers`` and --strict-markers."""
    lines = [
        f"{level}: {level.upper()} - {title} (respond {response_time(minutes)}): {covers}."
        for level, (title, covers, minutes) in SEVERITY_LEVELS.items()
    ]
    lines += [f"{name}: component: {meaning}" for name, meaning in COMPONENT_MEANINGS.items()]
    return [*lines, FIX_MARKER]


def pytest_configure(config: pytest.Config) -> None:
    for line in marker_lines():
        config.addinivalue_line("markers", line)


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
