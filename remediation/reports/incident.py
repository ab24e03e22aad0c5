"""The incident record: severity, response deadline, counts and one entry per failing check (plain dicts)."""

from __future__ import annotations

from datetime import datetime, timedelta

from observe.secrets import redact_obj
from remediation import knowledge
from remediation.contract import COMPONENTS, RESPONSE_MINUTES, SEVERITIES
from remediation.results import CheckResult
from remediation.scripts import ESCALATE, command, fix_id

SCHEMA_ID = "fossawork-incident/1"
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


def failure_entry(result: CheckResult, targets: dict, remediation: dict | None) -> dict:
    """One failing check: what was seen, the fix to run, the knowledge-base entry, and what remediation did."""
    check = result.check
    script, issue_type = check["script"], check["issue_type"]
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
        "fix": {
            "script": script,
            "issue_type": issue_type,
            "id": fix_id(script, issue_type),
            "command": command(script, issue_type, target_file, target),
            "dry_run_command": command(script, issue_type, target_file, target, execute=False),
            "escalate": script == ESCALATE,
        },
        "knowledge_base": knowledge.entry(script, issue_type, check["kb"]),
        "remediation": None,
    }
    if result.remediation is not None:
        entry["remediation"] = {**result.remediation, "output": result.remediation["output"][-MAX_OUTPUT:]}
    return entry


def _after(results: list[CheckResult], remediation: dict) -> dict:
    """What is left after --remediate: outcomes per kind, checks made worse, and the severity still open."""
    left = [r for r in results if r.outcome == "failed" and (r.remediation or {}).get("outcome") != "fixed"]
    worse = set(remediation["made_worse"])
    left += [r for r in results if r.nodeid in worse]
    return {
        "counts": remediation["counts"],
        "made_worse": remediation["made_worse"],
        "severity_after": next((s for s in SEVERITIES if any(r.severity == s for r in left)), "healthy"),
    }


def build(*, run_id, started, finished, args, targets, results, remediation=None, audit=(), evidence=None) -> dict:
    """The whole incident, redacted; ``results`` are the run's health checks in run order.

    ``targets`` maps profile name -> {name, description, source}; the first is the run's main target.
    """
    severity = severity_of(results)
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
        "response_deadline": deadline(started, severity),
        "counts": counts(results),
        "failures": [failure_entry(r, targets, remediation) for r in failing],
        "remediation": {
            "requested": remediation is not None,
            "status": remediation["status"] if remediation else "not requested (run with --remediate)",
            "fixes": list(remediation["fixes"].values()) if remediation else [],
            **(_after(results, remediation) if remediation else {}),
        },
        "evidence": evidence,
        "audit": list(audit),
    }
    return redact_obj(incident)
