"""The incident record: severity, response deadline, counts and one entry per failing check (plain dicts)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from observe.secrets import redact_obj
from remediation import knowledge
from remediation.contract import COMPONENTS, RESPONSE_MINUTES, SEVERITIES, SEVERITY_TITLES, response_time
from remediation.results import CheckResult
from remediation.scripts import ESCALATE, command, fix_id

SCHEMA_ID = "fossawork-incident/4"
OUTCOMES = ("passed", "failed", "skipped")
MAX_OUTPUT = 20_000


def severity_of(results: list[CheckResult]) -> str:
    """The highest P-level among failing checks, or 'healthy'."""
    failing = {r.severity for r in results if r.outcome == "failed"}
    return next((s for s in SEVERITIES if s in failing), "healthy")


def deadline(started: datetime, severity: str) -> str | None:
    """Start of the run plus the runbook's response time for ``severity`` (None when healthy)."""
    if severity not in RESPONSE_MINUTES:
        return None
    return (started + timedelta(minutes=RESPONSE_MINUTES[severity])).isoformat()


def respond(started: datetime, severity: str) -> str:
    """The deadline as the on-call engineer says it: 'respond now', 'respond within 15 minutes (by 03:27 UTC)'."""
    if severity not in RESPONSE_MINUTES:
        return "no response needed"
    minutes = RESPONSE_MINUTES[severity]
    if not minutes:
        return "respond now"
    by = (started + timedelta(minutes=minutes)).astimezone(UTC)
    return f"respond within {response_time(minutes)} (by {by:%H:%M} UTC)"


def cause_words(cause: dict) -> str:
    """What a root cause explains: '2 check(s) failing on it; run outside the selection'."""
    words = f"{len(cause['explains'])} check(s) skipped or failing on it"
    return words + ("; run outside the selection" if cause["outside_selection"] else "")


def counts(results: list[CheckResult]) -> dict:
    """passed/failed/skipped in total, per severity and per component."""
    blank = lambda: dict.fromkeys(OUTCOMES, 0)  # noqa: E731
    out = {
        "total": blank(),
        "by_severity": {s: blank() for s in SEVERITIES},
        "by_component": {c: blank() for c in COMPONENTS},
    }
    for r in results:
        out["total"][r.outcome] += 1
        out["by_severity"][r.severity][r.outcome] += 1
        out["by_component"][r.component][r.outcome] += 1
    return out


def failure_entry(result: CheckResult, targets: dict, remediation: dict | None, since: str | None = None) -> dict:
    """One failing check: what was seen, since when, the fix to run, the knowledge-base entry, what remediation did."""
    check, fix = result.check, result.fix
    script, issue_type = fix["script"], fix["issue_type"]
    target = targets[check["target"]]
    target_file, target = (remediation or {}).get("targets", {}).get(target["name"], (target["source"], target["name"]))
    entry = {
        "id": check["id"],
        "target": check["target"],
        "component": check["component"],
        "severity": check["severity"],
        "symptom": check["symptom"],
        "phase": result.phase,
        "message": result.message,
        "since": since,
        "fix": {
            "script": script,
            "issue_type": issue_type,
            "id": fix_id(script, issue_type),
            "command": command(script, issue_type, target_file, target),
            "dry_run_command": command(script, issue_type, target_file, target, execute=False),
            "escalate": script == ESCALATE,
            "cause": result.cause["id"] if result.cause else None,  # the check whose fix this is, when not its own
        },
        "knowledge_base": knowledge.entry(script, issue_type, fix["kb"]),
        "remediation": None,
    }
    if result.remediation is not None:
        entry["remediation"] = {**result.remediation, "output": result.remediation["output"][-MAX_OUTPUT:]}
    return entry


def build(
    *,
    run_id,
    started,
    finished,
    args,
    targets,
    results,
    remediation=None,
    audit=(),
    evidence=None,
    since=None,
    changed=(),
) -> dict:
    """The whole incident, redacted; ``results`` are the run's health checks in run order.

    ``targets`` maps profile name -> {name, description, source}; the first is the run's main target.
    ``since`` maps (target, node id) -> when that check's open alert started (ISO 8601), from the alert state.
    ``changed``: per target with a failing check, what changed since its last healthy run
    (:func:`remediation.reports.changes.section`).
    """
    since = since or {}
    severity = severity_of(results)
    # A root cause explains the checks skipped on it outside the selection and the failures that name it.
    explained: dict[str, set[str]] = {}
    for r in results:
        if r.cause and r.outcome == "failed":
            explained.setdefault(r.cause["id"], set()).add(r.nodeid)
    failing = sorted((r for r in results if r.outcome == "failed"), key=lambda r: r.rank)
    incident = {
        "schema": SCHEMA_ID,
        "run_id": run_id,
        "target": next(iter(targets.values())),
        "targets": list(targets.values()),
        "started": started.isoformat(),
        "finished": finished.isoformat(),
        "duration_seconds": round((finished - started).total_seconds(), 3),
        "pytest_args": list(args),
        "severity": severity,
        "severity_title": SEVERITY_TITLES.get(severity, "Healthy"),
        "response_deadline": deadline(started, severity),
        "respond": respond(started, severity),
        "counts": counts(results),
        "failures": [failure_entry(r, targets, remediation, since.get((r.target, r.nodeid))) for r in failing],
        "remediation": {
            "requested": remediation is not None,
            "status": remediation["status"] if remediation else "not requested (run with --remediate)",
            "fixes": list(remediation["fixes"].values()) if remediation else [],
            **({k: remediation[k] for k in ("counts", "made_worse", "severity_after")} if remediation else {}),
        },
        "root_causes": [
            {
                "id": r.nodeid,
                "severity": r.severity,
                "message": r.message,
                "explains": sorted({*r.explains, *explained.get(r.nodeid, ())}),
                "outside_selection": bool(r.explains),
            }
            for r in results
            if (r.explains or r.nodeid in explained) and r.outcome == "failed"
        ],
        "not_applicable": [{"id": r.nodeid, "reason": r.message} for r in results if r.status == "n/a"],
        "changed": list(changed),
        "evidence": evidence,
        "audit": list(audit),
    }
    return redact_obj(incident)
