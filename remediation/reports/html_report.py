"""The HTML incident page: one self-contained file, written from the incident record and the run's results.

Read at 3 a.m., the page answers in its first screen how bad it is, how soon
to respond and against which target (a banner coloured by severity), then what
changed since the last healthy run (the runbook's first question), then what
failed, most severe first, each with its evidence, the fix to paste (dry run,
then ``--execute``), its knowledge-base entry, what ``--remediate`` did and
since when it has been failing. A table of every check (failing first, then
passed and skipped ones with their reason) and the run's details follow.

Built from strings with the standard library: pytest-html cost a P1 verdict ~38 ms (its import of Jinja, its
template compiled every run, its hooks on every check), all of it for a page nobody reads before the verdict.
The recorder (remediation.plugin) writes it after the verdict is printed. Every string on the page passes
through :func:`text`: redacted (a sandbox's secrets are registered late) and escaped.
"""

from __future__ import annotations

import sys
from datetime import datetime
from html import escape
from pathlib import Path

from observe.secrets import redact
from remediation.contract import SEVERITIES, SEVERITY_TITLES
from remediation.reports.incident import cause_words
from remediation.results import CheckResult

STYLESHEET = Path(__file__).with_name("incident.css")
# The knowledge-base lists shown under a failure (its symptoms are the check's own symptom, shown above).
KB_PARTS = (("Causes", "causes"), ("Solutions", "solutions"))


def page(incident: dict, checks: list[CheckResult]) -> str:
    """The page of ``incident`` and ``checks`` (the run's health checks): the incident, then the table of every
    check and the run's details; the stylesheet inlined, no script, nothing fetched."""
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{text(page_title(incident))}</title>"
        f"<style>{STYLESHEET.read_text(encoding='utf-8')}</style></head><body>"
        + banner_html(incident)
        + causes_html(incident)
        + changed_html(incident)
        + failures_html(incident)
        + na_html(incident)
        + results_html(checks)
        + run_html(incident)
        + "</body></html>\n"
    )


def text(value) -> str:
    """Any value as page text: redacted, then escaped (quotes too, so it may stand in an attribute)."""
    return escape(redact(str(value)))


def severity_words(incident: dict) -> str:
    """'P1 Critical', 'Healthy'."""
    if incident["severity"] == "healthy":
        return "Healthy"
    return f"{incident['severity'].upper()} {incident['severity_title']}"


def page_title(incident: dict) -> str:
    """The browser tab: severity and target first, so a row of tabs reads as a row of incidents."""
    return f"{severity_words(incident)}: {incident['target']['name']} - FossaWork health {incident['run_id']}"


def utc(iso: str) -> str:
    """An ISO 8601 time as a reader says it: '03:12 UTC, 30 Nov 2026'."""
    return f"{datetime.fromisoformat(iso):%H:%M UTC, %d %b %Y}"


def banner_html(incident: dict) -> str:
    """The ``#incident-banner``: severity in words, how soon to respond, target, what failed, what was done."""
    target = incident["target"]
    total = incident["counts"]["total"]
    checked = sum(total.values())
    failing = ", ".join(
        f"{counts['failed']} {level.upper()}"
        for level, counts in incident["counts"]["by_severity"].items()
        if counts["failed"]
    )
    verdict = f"{total['failed']} of {checked} checks failing ({failing})" if failing else f"All {checked} checks pass"
    if total["skipped"]:
        verdict += f", {total['skipped']} skipped"
    verdict += "."
    if total["failed"] or incident["remediation"]["requested"]:
        verdict += f" Remediation: {incident['remediation']['status']}."
    others = [t["name"] for t in incident["targets"][1:]]
    where = text(target["name"]) + (f" (and {text(', '.join(others))})" if others else "")
    about = target["description"] or target["source"]
    respond = incident["respond"]
    return (
        f'<section id="incident-banner" class="severity-{text(incident["severity"])}">'
        f'<p class="banner-severity">{text(severity_words(incident))}</p>'
        f'<p class="banner-respond">{text(respond[0].upper() + respond[1:])}</p>'
        f'<p class="banner-target">Target <b>{where}</b>: {text(about)}</p>'
        f'<p class="banner-verdict">{text(verdict)}</p>'
        f'<p class="banner-run">Run {text(incident["run_id"])}, started {text(utc(incident["started"]))}, '
        f"{incident['duration_seconds']:g} s</p>"
        "</section>"
    )


def causes_html(incident: dict) -> str:
    """Root causes found outside the run's selection (remediation.rootcause), above the failures they explain."""
    items = "".join(
        f"<li><b>{text(c['severity'].upper())}</b> <code>{text(c['id'])}</code>: {text(c['message'])} "
        f"({text(cause_words(c))})</li>"
        for c in incident["root_causes"]
    )
    return f'<section id="incident-root-causes"><h2>Root cause</h2><ul>{items}</ul></section>' if items else ""


def na_html(incident: dict) -> str:
    """Checks the profile rules out for this deployment: listed with the reason, never counted as passing."""
    items = "".join(
        f"<li><code>{text(na['id'])}</code>: {text(na['reason'])}</li>" for na in incident["not_applicable"]
    )
    return (
        f'<section id="incident-not-applicable"><h2>Not applicable (N/A)</h2><ul>{items}</ul></section>'
        if items
        else ""
    )


def changed_html(incident: dict) -> str:
    """The ``#incident-changed``: per failing target, each fact that differs from its last healthy run, newest first;
    the three most relevant in bold, and those that happened since the previous (failing) run say so."""
    if not incident["changed"]:
        return ""
    from remediation.reports.changes import most_relevant  # only for a failing run, as the fingerprint itself

    parts = []
    for section in incident["changed"]:
        where = f" of {text(section['target'])}" if len(incident["targets"]) > 1 else ""
        if section["since"] is None:
            heading = f"Changed since the last healthy run{where}: not known"
            body = f"<p>{text(section['note'] or '')}</p>"
        else:
            heading = f"Changed since the last healthy run{where} ({text(utc(section['since']))})"
            top = {id(c) for c in most_relevant(section["changes"])}
            # Marked only when it tells recent changes from older ones (not when the previous run was the healthy one).
            recent = any(not c["new"] for c in section["changes"])
            items = "".join(
                f'<li class="change kind-{text(c["kind"])}{" relevant" if id(c) in top else ""}">'
                f"{text(c['text'])}{' <em>(since the previous run)</em>' if recent and c['new'] else ''}</li>"
                for c in section["changes"]
            )
            body = f"<ol>{items}</ol>" if items else "<p>Nothing the fingerprint records has changed.</p>"
        unknown = "".join(f"<li>{text(u)}</li>" for u in section["unknown"])
        if unknown:
            body += f'<details class="unknown"><summary>Not compared (unknown)</summary><ul>{unknown}</ul></details>'
        parts.append(f'<section class="changed-target"><h2>{heading}</h2>{body}</section>')
    return f'<div id="incident-changed">{"".join(parts)}</div>'


def failures_html(incident: dict) -> str:
    """The ``#incident-failures``: one group per severity, most severe first, one card per failing check."""
    groups = []
    for level in SEVERITIES:
        failures = [f for f in incident["failures"] if f["severity"] == level]
        if failures:
            heading = f"{level.upper()} {SEVERITY_TITLES[level]}: {len(failures)} failing"
            cards = "".join(failure_html(f) for f in failures)
            group = f'<section class="severity-group severity-{level}"><h2>{text(heading)}</h2>{cards}</section>'
            groups.append(group)
    return f'<div id="incident-failures">{"".join(groups)}</div>' if groups else ""


def failure_html(failure: dict) -> str:
    """One failing check: symptom, evidence, since when, the fix commands, the knowledge base, remediation."""
    fix, kb = failure["fix"], failure["knowledge_base"]
    if fix["escalate"]:
        commands = "<dd>escalate: the runbook has no safe fix, a human decides</dd>"
    else:
        commands = (
            f"<dd>dry run: <code>{text(fix['dry_run_command'])}</code></dd>"
            f"<dd>then: <code>{text(fix['command'])}</code></dd>"
        )
    if fix["cause"]:
        # Its own fix cannot help (a restart of a backend that dies at import): the cause's is offered.
        commands = f"<dd>the fix of its cause, <code>{text(fix['cause'])}</code>:</dd>" + commands
    rows = [
        ("Evidence", f'<dd><pre class="evidence">{text(failure["message"])}</pre></dd>'),
        ("Failing since", f"<dd>{text(since_words(failure['since']))}</dd>"),
        ("Fix", commands),
        (
            "Knowledge base",
            f"<dd><b>{text(kb['title'])}</b> ({text(kb['id'])})</dd>"
            + "".join(f"<dd>{heading}: {text('; '.join(kb[key]))}</dd>" for heading, key in KB_PARTS if kb.get(key)),
        ),
        ("Remediation", f"<dd>{text(remediation_words(failure['remediation']))}</dd>"),
    ]
    body = "".join(f"<dt>{text(name)}</dt>{value}" for name, value in rows)
    target = f" on {text(failure['target'])}" if failure["target"] else ""
    return (
        f'<article class="failure" id="failure-{text(failure["id"])}">'
        f"<h3>{text(failure['symptom'])}</h3>"
        f'<p class="check-id"><code>{text(failure["id"])}</code>{target} ({text(failure["component"])})</p>'
        f"<dl>{body}</dl></article>"
    )


def since_words(since: str | None) -> str:
    """When the check's open alert began, or why that is not known."""
    if since is None:
        return "not tracked: no open alert for this check (alerts off, or below --alert-severity)"
    return utc(since)


def remediation_words(remediation: dict | None) -> str:
    """What --remediate did for this check, in one line."""
    if remediation is None:
        return "not run (run with --remediate to apply the fix and re-check)"
    outcome = remediation["outcome"] + (f": {remediation['reason']}" if remediation["reason"] else "")
    exit_code = remediation["exit_code"]
    return outcome + (f" (fix exit {exit_code})" if exit_code is not None else "")


def results_html(checks: list[CheckResult]) -> str:
    """The ``#results-table``: every check of the run, the failing ones first (most severe first), then in run
    order; a skipped or N/A check shows why, a waived one its waiver."""
    failing = sorted((c for c in checks if c.outcome == "failed"), key=lambda c: c.rank)
    rows = "".join(result_row(c) for c in [*failing, *(c for c in checks if c.outcome != "failed")])
    head = "".join(f"<th>{name}</th>" for name in ("Outcome", "Check", "Severity", "Component", "Fix", "Duration"))
    return (
        f'<section id="results"><h2>Every check: {len(checks)}</h2><table id="results-table">'
        f"<thead><tr>{head}<th>Message</th></tr></thead><tbody>{rows}</tbody></table></section>"
    )


def result_row(check: CheckResult) -> str:
    entry, waiver = check.check, check.waiver
    # "" when no report got past its setup: a run interrupted while it ran.
    status = check.status or "unfinished"
    message = check.message
    if waiver is not None:
        message = f"waived: {waiver['reason']} (owner {waiver['owner']}, until {waiver['expires']})"
    fix = " ".join(filter(None, (entry.get("script"), entry.get("issue_type"))))
    cells = (
        ("result", text(status)),
        ("check", f"<code>{text(check.nodeid)}</code>"),
        ("severity", text((check.severity or "").upper())),
        ("component", text(check.component or "")),
        ("fix", text(fix)),
        ("duration", f"{check.duration:.2f} s"),
        ("message", f"<pre>{text(message)}</pre>" if message else ""),
    )
    tds = "".join(f'<td class="col-{name}">{value}</td>' for name, value in cells)
    return f'<tr class="result status-{text(status).replace("/", "")}">{tds}</tr>'


def run_html(incident: dict) -> str:
    """The ``#run-details`` at the end: which run, how it was started, against which profiles, where its evidence is."""
    targets = "".join(f"<dd>{text(t['name'])}: {text(t['source'])}</dd>" for t in incident["targets"])
    rows = [
        ("Run", f"<dd>{text(incident['run_id'])}</dd>"),
        ("Started", f"<dd>{text(utc(incident['started']))}, for {incident['duration_seconds']:g} s</dd>"),
        ("Command", f"<dd><code>pytest {text(' '.join(incident['pytest_args']))}</code></dd>"),
        ("Targets", targets),
        ("Python", f"<dd>{text(sys.version.split()[0])} on {text(sys.platform)}</dd>"),
    ]
    if incident["evidence"]:
        rows.append(("Evidence kept before the fixes", f"<dd><code>{text(incident['evidence'])}</code></dd>"))
    body = "".join(f"<dt>{name}</dt>{value}" for name, value in rows)
    return f'<footer id="run-details"><h2>Run</h2><dl>{body}</dl></footer>'
