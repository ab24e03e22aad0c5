"""The HTML incident report: pytest-html's self-contained page, opened by the incident.

Read at 3 a.m., the page answers in its first screen how bad it is, how soon
to respond and against which target (a banner coloured by severity), then what
changed since the last healthy run (the runbook's first question), then what
failed, most severe first, each with its evidence, the fix to paste (dry run,
then ``--execute``), its knowledge-base entry, what ``--remediate`` did and
since when it has been failing. pytest-html's results table (passed and
skipped checks too) and its environment follow. Everything goes through
pytest-html's hooks; ``incident.css`` (appended with pytest-html's ``--css``)
puts the incident first and colours it.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from html import escape, unescape
from pathlib import Path

import pytest

from observe.secrets import redact, redact_obj
from remediation.contract import SEVERITIES, SEVERITY_TITLES
from remediation.reports.incident import cause_words
from remediation.results import CHECK_PROPERTY, skip_reason, user_property
from remediation.storage import write_atomically

STYLESHEET = Path(__file__).with_name("incident.css")
# The knowledge-base lists shown under a failure (its symptoms are the check's own symptom, shown above).
KB_PARTS = (("Causes", "causes"), ("Solutions", "solutions"))
MARKUP = re.compile(r"(<[^>]*>)")
DATA_BLOB = re.compile(r'(?<=data-jsonblob=")([^"]*)')  # pytest-html's results, as HTML-escaped JSON


class IncidentHtml:
    """Hook implementations that add the incident to pytest-html's report; registered on the controller only."""

    def __init__(self, config: pytest.Config, recorder):
        self.config = config
        self.recorder = recorder  # the run's IncidentRecorder: its incident, and where pytest-html writes
        self.report_data = None  # pytest-html's ReportData, whose title is set once the incident is known
        config.option.css = [*(config.getoption("css", None) or ()), str(STYLESHEET)]

    def pytest_html_report_title(self, report):
        """Keep pytest-html's report data: the title (the browser tab) names the incident at the end of the run."""
        self.report_data = report

    def pytest_html_results_summary(self, prefix, summary, postfix, session):
        """The incident first: banner, what changed since the last healthy run, then the failing checks by severity."""
        incident = self.recorder.incident
        if incident is None:
            return
        if self.report_data is not None:
            self.report_data.title = page_title(incident)
        prefix.append(
            banner_html(incident)
            + causes_html(incident)
            + changed_html(incident)
            + failures_html(incident)
            + na_html(incident)
        )

    def pytest_html_results_table_header(self, cells):
        """Severity, component and fix columns after the test id."""
        cells[2:2] = ["<th>Severity</th>", "<th>Component</th>", "<th>Fix</th>"]

    def pytest_html_results_table_row(self, report, cells):
        check = check_of(report) or {}
        fix = " ".join(filter(None, (check.get("script", ""), check.get("issue_type", ""))))
        cells[2:2] = [
            f'<td class="col-severity">{escape(check.get("severity", "").upper())}</td>',
            f'<td class="col-component">{escape(check.get("component", ""))}</td>',
            f'<td class="col-fix">{escape(fix)}</td>',
        ]

    def pytest_html_results_table_html(self, report, data):
        """A skipped row says why it was skipped, not pytest's (file, line, 'Skipped: …') tuple."""
        if report.skipped and isinstance(report.longrepr, tuple) and data:
            data[0] = escape(skip_reason(report)) + "\n"

    @pytest.hookimpl
    def pytest_fossawork_write_report(self, config, incident, report_dir, stem):
        """Finish ``stem.html`` (pytest-html's file) with a last redaction pass over the whole page."""
        recorder = self.recorder
        source = recorder.html_path or (Path(recorder.user_html) if recorder.user_html else None)
        if source is None or not source.exists():
            return None
        path = Path(report_dir) / f"{stem}.html"
        return write_atomically(path, redact_page(source.read_text(encoding="utf-8")))


def redact_page(page: str) -> str:
    """The last redaction pass over a finished page (secrets a sandbox registers late), one piece at a time.

    Run over the raw page, a mask such as "Authorization: <up to a space>" would swallow the end of
    pytest-html's embedded JSON (its quotes are &#34;) or of a tag, and the page would lose its results
    table. So the JSON is redacted as data, and the rest one tag or one run of text at a time.
    """

    def data(blob: str) -> str:
        return escape(json.dumps(redact_obj(json.loads(unescape(blob)))), quote=True)

    def markup(text: str) -> str:
        return "".join(redact(piece) for piece in MARKUP.split(text))

    # split() keeps the blob's group: text, blob, text.
    return "".join(data(part) if i % 2 else markup(part) for i, part in enumerate(DATA_BLOB.split(page)))


def check_of(report) -> dict | None:
    """The catalog entry a health check's report carries, or None for other tests."""
    raw = user_property(report, CHECK_PROPERTY)
    entry = json.loads(raw) if raw is not None else {}
    return entry if "id" in entry else None


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
    where = escape(target["name"]) + (f" (and {escape(', '.join(others))})" if others else "")
    about = target["description"] or target["source"]
    respond = incident["respond"]
    return (
        f'<section id="incident-banner" class="severity-{escape(incident["severity"])}">'
        f'<p class="banner-severity">{escape(severity_words(incident))}</p>'
        f'<p class="banner-respond">{escape(respond[0].upper() + respond[1:])}</p>'
        f'<p class="banner-target">Target <b>{where}</b>: {escape(about)}</p>'
        f'<p class="banner-verdict">{escape(verdict)}</p>'
        f'<p class="banner-run">Run {escape(incident["run_id"])}, started {escape(utc(incident["started"]))}, '
        f"{incident['duration_seconds']:g} s</p>"
        "</section>"
    )


def causes_html(incident: dict) -> str:
    """Root causes found outside the run's selection (remediation.rootcause), above the failures they explain."""
    items = "".join(
        f"<li><b>{escape(c['severity'].upper())}</b> <code>{escape(c['id'])}</code>: {escape(c['message'])} "
        f"({escape(cause_words(c))})</li>"
        for c in incident["root_causes"]
    )
    return f'<section id="incident-root-causes"><h2>Root cause</h2><ul>{items}</ul></section>' if items else ""


def na_html(incident: dict) -> str:
    """Checks the profile rules out for this deployment: listed with the reason, never counted as passing."""
    items = "".join(
        f"<li><code>{escape(na['id'])}</code>: {escape(na['reason'])}</li>" for na in incident["not_applicable"]
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
        where = f" of {escape(section['target'])}" if len(incident["targets"]) > 1 else ""
        if section["since"] is None:
            heading = f"Changed since the last healthy run{where}: not known"
            body = f"<p>{escape(section['note'] or '')}</p>"
        else:
            heading = f"Changed since the last healthy run{where} ({escape(utc(section['since']))})"
            top = {id(c) for c in most_relevant(section["changes"])}
            # Marked only when it tells recent changes from older ones (not when the previous run was the healthy one).
            recent = any(not c["new"] for c in section["changes"])
            items = "".join(
                f'<li class="change kind-{escape(c["kind"])}{" relevant" if id(c) in top else ""}">'
                f"{escape(c['text'])}{' <em>(since the previous run)</em>' if recent and c['new'] else ''}</li>"
                for c in section["changes"]
            )
            body = f"<ol>{items}</ol>" if items else "<p>Nothing the fingerprint records has changed.</p>"
        unknown = "".join(f"<li>{escape(u)}</li>" for u in section["unknown"])
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
            group = f'<section class="severity-group severity-{level}"><h2>{escape(heading)}</h2>{cards}</section>'
            groups.append(group)
    return f'<div id="incident-failures">{"".join(groups)}</div>' if groups else ""


def failure_html(failure: dict) -> str:
    """One failing check: symptom, evidence, since when, the fix commands, the knowledge base, remediation."""
    fix, kb = failure["fix"], failure["knowledge_base"]
    if fix["escalate"]:
        commands = "<dd>escalate: the runbook has no safe fix, a human decides</dd>"
    else:
        commands = (
            f"<dd>dry run: <code>{escape(fix['dry_run_command'])}</code></dd>"
            f"<dd>then: <code>{escape(fix['command'])}</code></dd>"
        )
    if fix["cause"]:
        # Its own fix cannot help (a restart of a backend that dies at import): the cause's is offered.
        commands = f"<dd>the fix of its cause, <code>{escape(fix['cause'])}</code>:</dd>" + commands
    rows = [
        ("Evidence", f'<dd><pre class="evidence">{escape(failure["message"])}</pre></dd>'),
        ("Failing since", f"<dd>{escape(since_words(failure['since']))}</dd>"),
        ("Fix", commands),
        (
            "Knowledge base",
            f"<dd><b>{escape(kb['title'])}</b> ({escape(kb['id'])})</dd>"
            + "".join(f"<dd>{heading}: {escape('; '.join(kb[key]))}</dd>" for heading, key in KB_PARTS if kb.get(key)),
        ),
        ("Remediation", f"<dd>{escape(remediation_words(failure['remediation']))}</dd>"),
    ]
    body = "".join(f"<dt>{escape(name)}</dt>{value}" for name, value in rows)
    target = f" on {escape(failure['target'])}" if failure["target"] else ""
    return (
        f'<article class="failure" id="failure-{escape(failure["id"])}">'
        f"<h3>{escape(failure['symptom'])}</h3>"
        f'<p class="check-id"><code>{escape(failure["id"])}</code>{target} ({escape(failure["component"])})</p>'
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
