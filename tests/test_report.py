"""Incident reports: JSON valid against the published schema, unique names, no secrets, xdist, terminal lines."""

import json
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta

import jsonschema
from report_support import (  # noqa: F401 (fixture)
    JWT_SECRET,
    PASSWORD,
    ROOT,
    SCHEMA,
    incident_files,
    project,
    row_messages,
    run,
)

from remediation import plugin as remediation_plugin


def test_the_json_report_validates_against_the_published_schema(project):  # noqa: F811
    result = run(project)
    result.assert_outcomes(passed=1, failed=2, skipped=1)
    incident = json.loads(project.path.joinpath("reports", "latest.json").read_text())
    jsonschema.validate(incident, SCHEMA)
    assert (incident["severity"], incident["severity_title"]) == ("p1", "Critical")
    assert incident["response_deadline"] == incident["started"]  # P1: respond immediately
    assert incident["respond"] == "respond now"
    assert incident["target"] == {"name": "local", "description": "inner test target", "source": "targets.toml"}
    assert incident["counts"]["total"] == {"passed": 1, "failed": 2, "skipped": 1}
    assert incident["counts"]["by_severity"]["p2"] == {"passed": 0, "failed": 1, "skipped": 0}
    assert incident["counts"]["by_component"]["auth"] == {"passed": 1, "failed": 0, "skipped": 0}
    first, second = incident["failures"]
    assert first["id"] == "health/test_checks.py::test_api_answers_200"
    assert first["symptom"] == "API endpoints returning 500 errors."
    assert first["fix"]["command"] == (
        "python3 -m remediation.scripts.fix_backend_issues api_errors"
        " --target-file targets.toml --target local --execute"
    )
    assert first["knowledge_base"]["id"] == "backend_not_starting"
    assert first["message"].startswith("observed 500 from /api/health")
    assert second["knowledge_base"]["id"] == "fix-database-issues/vacuum"
    assert first["remediation"] is None and incident["remediation"]["requested"] is False
    assert first["since"] is None  # no alert state in the report directory
    result.stdout.fnmatch_lines(
        [
            "*incident P1: *",
            "respond now",
            "P1 health/test_checks.py::test_api_answers_200:",
            "    dry run: python3 -m remediation.scripts.fix_backend_issues api_errors --target-file * --target local",
            "    then:    python3 -m remediation.scripts.fix_backend_issues api_errors * --execute",
        ]
    )


def test_the_deadline_follows_the_highest_failing_level(project):  # noqa: F811
    result = run(project, "-m", "p2 or p3")
    result.assert_outcomes(passed=1, failed=1)
    incident = json.loads(project.path.joinpath("reports", "latest.json").read_text())
    started = datetime.fromisoformat(incident["started"])
    deadline = started + timedelta(minutes=15)
    assert (incident["severity"], incident["severity_title"]) == ("p2", "High")
    assert datetime.fromisoformat(incident["response_deadline"]) == deadline
    assert incident["respond"] == f"respond within 15 minutes (by {deadline:%H:%M} UTC)"
    result.stdout.fnmatch_lines([f"respond within 15 minutes (by {deadline:%H:%M} UTC)"])


def test_a_healthy_run_says_healthy_with_no_deadline(project):  # noqa: F811
    run(project, "-m", "p3").assert_outcomes(passed=1)
    incident = json.loads(project.path.joinpath("reports", "latest.json").read_text())
    assert (incident["severity"], incident["response_deadline"], incident["failures"]) == ("healthy", None, [])
    assert (incident["severity_title"], incident["respond"]) == ("Healthy", "no response needed")


def test_two_runs_in_the_same_second_write_distinct_reports(project, monkeypatch):  # noqa: F811
    frozen = datetime(2025, 1, 13, 10, 15, 0, tzinfo=UTC)

    class Frozen(datetime):
        @classmethod
        def now(cls, tz=None):
            return frozen

    monkeypatch.setattr(remediation_plugin, "datetime", Frozen)
    run(project)
    run(project)
    files = incident_files(project)
    assert len(files) == 4, files  # two runs x (json, html)
    assert all(f.name.startswith("incident-20250113T101500Z-") for f in files)
    latest = json.loads(project.path.joinpath("reports", "latest.json").read_text())
    assert {f.stem for f in files} == {f.stem for f in files if f.suffix == ".json"}
    assert f"incident-{latest['run_id']}.json" in {f.name for f in files}


def test_runs_without_health_checks_write_no_report(pytester, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    pytester.makeconftest('pytest_plugins = ["fixtures.target", "remediation.catalog", "remediation.plugin"]\n')
    pytester.path.joinpath("targets.toml").write_text("[local]\n")
    pytester.makepyfile(test_self="def test_ok():\n    pass\n")
    pytester.runpytest("--target-file", "targets.toml", "--report-dir", "reports").assert_outcomes(passed=1)
    reports = pytester.path / "reports"
    assert not reports.exists() or list(reports.iterdir()) == []


def test_secrets_appear_in_no_written_file(project):  # noqa: F811
    run(project).assert_outcomes(passed=1, failed=2, skipped=1)
    # Every file: the reports, and the fingerprints and their key beside them.
    written = [p for p in project.path.joinpath("reports").rglob("*") if p.is_file()]
    assert {p.suffix for p in written if p.parent.name == "reports"} == {".json", ".html"}
    assert {p.parent.name for p in written} == {"reports", "fingerprints"}
    for path in written:
        text = path.read_text()
        assert PASSWORD not in text, path
        assert JWT_SECRET not in text, path
        assert "abc.def.ghi" not in text, path
    assert "[REDACTED]" in project.path.joinpath("reports", "latest.json").read_text()


def test_the_pages_table_holds_every_check_failing_first_with_its_evidence_redacted(project):  # noqa: F811
    run(project).assert_outcomes(passed=1, failed=2, skipped=1)
    rows = row_messages(project.path.joinpath("reports", "latest.html").read_text())
    assert [outcome for outcome, _ in rows.values()] == ["failed", "failed", "passed", "skipped"], rows
    _, message = rows["health/test_checks.py::test_api_answers_200"]
    assert message == "observed 500 from /api/health after login with [REDACTED], expected 200", message
    assert rows["health/test_checks.py::test_free_pages_under_ratio"][1].endswith("secret [REDACTED]")


def test_the_page_is_written_after_the_verdict_is_printed(project):  # noqa: F811
    # What the reports directory holds as pytest prints its summary: the JSON, not yet the page.
    project.makeconftest(
        'pytest_plugins = ["fixtures.target", "remediation.catalog", "remediation.plugin"]\n'
        "from pathlib import Path\n"
        "def pytest_terminal_summary(terminalreporter):\n"
        "    written = sorted(p.suffix for p in Path('reports').glob('incident-*'))\n"
        "    terminalreporter.write_line('AT VERDICT ' + ' '.join(written))\n"
    )
    result = run(project)
    result.assert_outcomes(passed=1, failed=2, skipped=1)
    named = ["incident report: reports/incident-*.json", "incident report: reports/incident-*.html"]
    result.stdout.fnmatch_lines([*named, "AT VERDICT .json"])
    assert sorted(f.suffix for f in incident_files(project)) == [".html", ".json"]


def test_reports_cross_xdist_and_are_written_once_by_the_controller(project):  # noqa: F811
    result = run(project, "-n", "2", subprocess=True)
    result.assert_outcomes(passed=1, failed=2, skipped=1)
    assert sorted(f.suffix for f in incident_files(project)) == [".html", ".json"]
    incident = json.loads(project.path.joinpath("reports", "latest.json").read_text())
    jsonschema.validate(incident, SCHEMA)
    assert [f["severity"] for f in incident["failures"]] == ["p1", "p2"]


def test_under_xdist_the_incident_line_starts_its_own_line_after_the_progress(project):  # noqa: F811
    result = run(project, "-n", "2", subprocess=True)
    result.assert_outcomes(passed=1, failed=2, skipped=1)
    lines = result.stdout.lines
    assert not [line for line in lines if "[100%]" in line and "incident" in line], result.stdout.str()
    result.stdout.fnmatch_lines(["-* incident P1: * -*", "respond now"])


def test_the_junit_check_property_is_json_with_the_catalog_entry(project):  # noqa: F811
    run(project, "--junitxml=junit.xml").assert_outcomes(passed=1, failed=2, skipped=1)
    case = next(c for c in ET.parse(project.path / "junit.xml").iter("testcase") if c.get("name") == "test_skipped")
    value = next(p.get("value") for p in case.iter("property") if p.get("name") == "fossawork_check")
    assert json.loads(value) == {
        "id": "health/test_checks.py::test_skipped",
        "component": "performance",
        "severity": "p4",
        "symptom": "Cosmetic.",
        "script": "escalate",
        "issue_type": "",
        "kb": "",
        "target": "local",
    }


def test_the_header_names_the_target_its_profile_file_and_its_layout(project):  # noqa: F811
    project.path.joinpath("targets.toml").write_text(
        '[local]\ndescription = "inner"\n[v2]\nendpoints = { health = "/health" }\n[box]\nsandbox = "v2"\n'
    )
    result = run(project, "--target=local", "--target=v2", "--target=box", "--collect-only")
    path = project.path / "targets.toml"
    result.stdout.fnmatch_lines(
        [
            f"target: local (profile file {path}, layout runbook)",
            f"target: v2 (profile file {path}, layout v2)",
            f"target: box (profile file {path}, layout v2)",
        ]
    )
