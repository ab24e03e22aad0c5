"""The HTML incident report: pytest-html's self-contained report plus the incident summary, columns and fixes."""

from __future__ import annotations

import json
from html import escape
from pathlib import Path

import pytest

from observe.secrets import redact
from remediation import knowledge
from remediation.results import CHECK_PROPERTY, user_property
from remediation.scripts import command
from remediation.storage import write_atomically


class IncidentHtml:
    """Hook implementations that add the incident to pytest-html's report; registered on the controller only."""

    def __init__(self, config: pytest.Config, recorder):
        self.config = config
        self.recorder = recorder  # the run's IncidentRecorder: its incident, and where pytest-html writes

    def pytest_html_results_summary(self, prefix, summary, postfix, session):
        """Incident summary at the top: severity, deadline, target, counts, remediation."""
        if self.recorder.incident is not None:
            prefix.append(summary_html(self.recorder.incident))

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
        """With each failure: the command to paste and the knowledge-base entry."""
        check = check_of(report)
        if check is not None and report.failed:
            data.append(fix_html(self.config, check))

    @pytest.hookimpl
    def pytest_fossawork_write_report(self, config, incident, report_dir, stem):
        """Finish ``stem.html`` (pytest-html's file) with a last redaction pass over the whole page."""
        recorder = self.recorder
        source = recorder.html_path or (Path(recorder.user_html) if recorder.user_html else None)
        if source is None or not source.exists():
            return None
        path = Path(report_dir) / f"{stem}.html"
        return write_atomically(path, redact(source.read_text(encoding="utf-8")))


def check_of(report) -> dict | None:
    """The catalog entry a health check's report carries, or None for other tests."""
    raw = user_property(report, CHECK_PROPERTY)
    entry = json.loads(raw) if raw is not None else {}
    return entry if "id" in entry else None


def summary_html(incident: dict) -> str:
    """The ``#incident-summary`` block."""
    total = incident["counts"]["total"]
    by_severity = " ".join(
        f"{s.upper()}: {c['failed']} failed / {c['passed']} passed / {c['skipped']} skipped"
        for s, c in incident["counts"]["by_severity"].items()
        if any(c.values())
    )
    target = incident["target"]
    rows = [
        ("Severity", incident["severity"].upper()),
        ("Respond by", incident["response_deadline"] or "no response needed"),
        ("Target", f"{target['name']} ({target['description'] or target['source']})"),
        ("Checks", ", ".join(f"{n} {k}" for k, n in total.items())),
        ("By severity", by_severity or "-"),
        ("Remediation", incident["remediation"]["status"]),
    ]
    body = "".join(f"<tr><th>{escape(k)}</th><td>{escape(v)}</td></tr>" for k, v in rows)
    return (
        f'<div id="incident-summary" class="incident-{escape(incident["severity"])}">'
        f"<h2>Incident {escape(incident['run_id'])}</h2><table>{body}</table></div>"
    )


def fix_html(config: pytest.Config, check: dict) -> str:
    """The fix command and knowledge-base entry shown under a failing check."""
    from fixtures.target import target_plugin

    tp = target_plugin(config, check.get("target"))
    cmd = command(check["script"], check["issue_type"], str(tp.path), tp.name) or "escalate: a human decides"
    kb = knowledge.entry(check["script"], check["issue_type"], check["kb"])
    parts = [f'<div class="fossawork-fix"><b>Fix:</b> <code>{escape(cmd)}</code>']
    parts.append(f"<b>Knowledge base: {escape(kb['id'])}</b> ({escape(kb['title'])})")
    for heading in ("symptoms", "causes", "solutions"):
        parts.append(f"<b>{heading.capitalize()}:</b> " + "; ".join(escape(x) for x in kb[heading]))
    return "\n".join(parts) + "</div>"
