"""The catalog: the marker contract is enforced at collection, --runbook lists checks, RUNBOOK.md stays in sync."""

import subprocess
import sys
from pathlib import Path

import pytest

from remediation.scripts import scripts

ROOT = Path(__file__).resolve().parent.parent

INNER_CONFTEST = 'pytest_plugins = ["fixtures.target", "remediation.catalog", "remediation.plugin"]\n'


@pytest.fixture
def project(pytester, monkeypatch):
    """An inner project with the suite's plugins, a targets file and a ``health/`` directory."""
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    monkeypatch.setenv("FOSSAWORK_REPORT_DIR", str(pytester.path / "reports"))
    pytester.makeconftest(INNER_CONFTEST)
    pytester.makeini("[pytest]\naddopts = --strict-markers\n")
    pytester.path.joinpath("targets.toml").write_text('[local]\ndescription = "inner"\n')
    pytester.mkdir("health")
    return pytester


def write_check(project, body: str, name: str = "test_checks.py") -> None:
    project.path.joinpath("health", name).write_text("import pytest\n\n" + body)


def run(project, *args):
    return project.runpytest(
        "-p", "no:cacheprovider", "-p", "no:benchmark", "-p", "no:anyio", "--target-file", "targets.toml", *args
    )


GOOD = '''
@pytest.mark.p1
@pytest.mark.backend
@pytest.mark.fix("fix-backend-issues", issue_type="api_errors", kb="backend_not_starting")
def test_api_answers():
    """API endpoints returning 500 errors."""
    open("ran.txt", "w").write("ran")
'''

PROBLEMS = {
    "no severity": (
        '@pytest.mark.backend\n@pytest.mark.fix("escalate")\ndef test_a():\n    pass\n',
        "health/test_checks.py::test_a: missing a severity marker (one of p1, p2, p3, p4)",
    ),
    "two severities": (
        '@pytest.mark.p1\n@pytest.mark.p2\n@pytest.mark.backend\n@pytest.mark.fix("escalate")\n'
        "def test_a():\n    pass\n",
        "health/test_checks.py::test_a: has 2 severity markers (p1, p2), expected exactly one",
    ),
    "no component": (
        '@pytest.mark.p1\n@pytest.mark.fix("escalate")\ndef test_a():\n    pass\n',
        "health/test_checks.py::test_a: missing a component marker (one of backend, frontend, database, auth, "
        "performance, automation)",
    ),
    "no fix": (
        "@pytest.mark.p1\n@pytest.mark.backend\ndef test_a():\n    pass\n",
        "health/test_checks.py::test_a: missing a fix marker: @pytest.mark.fix(script, issue_type='', kb='')",
    ),
    "unknown script": (
        '@pytest.mark.p1\n@pytest.mark.backend\n@pytest.mark.fix("restart-everything")\ndef test_a():\n    pass\n',
        "health/test_checks.py::test_a: fix marker: unknown fix script 'restart-everything'",
    ),
    "unknown issue type": (
        '@pytest.mark.p1\n@pytest.mark.backend\n@pytest.mark.fix("fix-backend-issues", "pkill")\ndef test_a():\n'
        "    pass\n",
        "health/test_checks.py::test_a: fix marker: fix-backend-issues has no issue type 'pkill' (known: api_errors, "
        "database_issues, performance_issues, memory_issues)",
    ),
    "unknown kb": (
        '@pytest.mark.p1\n@pytest.mark.backend\n@pytest.mark.fix("escalate", kb="nope")\ndef test_a():\n    pass\n',
        "health/test_checks.py::test_a: fix marker: unknown knowledge-base entry 'nope'",
    ),
}


@pytest.mark.parametrize("case", PROBLEMS)
def test_it_stops_collection_naming_the_check_and_what_it_lacks(project, case):
    body, line = PROBLEMS[case]
    write_check(project, GOOD + "\n\n" + body)
    result = run(project)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert any(err.startswith("ERROR: ") or line in err for err in result.errlines)
    assert any(line in err for err in result.errlines), result.errlines
    assert not project.path.joinpath("ran.txt").exists()


def test_it_enforces_the_contract_even_for_checks_deselected_by_m(project):
    write_check(project, GOOD + '\n\ndef test_unmarked():\n    """x"""\n')
    result = run(project, "-m", "p1")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert any("health/test_checks.py::test_unmarked: missing a severity marker" in e for e in result.errlines)


def test_it_accepts_marks_carried_by_pytest_param(project):
    write_check(
        project,
        '@pytest.mark.backend\n@pytest.mark.fix("fix-backend-issues", "api_errors")\n'
        '@pytest.mark.parametrize("route", [pytest.param("health", marks=pytest.mark.p1), '
        'pytest.param("dispensers", marks=[pytest.mark.p3, pytest.mark.fix("escalate")])])\n'
        'def test_route(route):\n    """Route answers."""\n',
    )
    result = run(project, "--runbook")
    assert result.ret == 0
    result.stdout.fnmatch_lines(
        [
            "health/test_checks.py::test_route[health]",
            "    P1 backend: Route answers.",
            "    fix: fix-backend-issues api_errors",
            "health/test_checks.py::test_route[dispensers]",
            "    P3 backend: Route answers.",
            "    fix: escalate",
        ]
    )


def test_it_leaves_tests_outside_health_alone(project):
    project.makepyfile(test_plain="def test_plain():\n    pass\n")
    run(project).assert_outcomes(passed=1)


def test_runbook_prints_the_catalog_without_running_anything(project):
    write_check(project, GOOD)
    result = run(project, "--runbook")
    assert result.ret == 0
    result.stdout.fnmatch_lines(
        [
            "FossaWork health checks: 1 (catalog only, nothing was run)",
            "health/test_checks.py::test_api_answers",
            "    P1 backend: API endpoints returning 500 errors.",
            "    fix: fix-backend-issues api_errors (kb: backend_not_starting)",
        ]
    )
    assert not project.path.joinpath("ran.txt").exists()
    assert not project.path.joinpath("reports").exists() or not list(project.path.joinpath("reports").iterdir())


def test_runbook_exits_0_when_there_are_no_checks(project):
    result = run(project, "--runbook")
    assert result.ret == 0
    result.stdout.fnmatch_lines(["FossaWork health checks: 0 (catalog only, nothing was run)"])


def test_runbook_markdown_lists_checks_fixes_and_the_knowledge_base(project):
    write_check(project, GOOD)
    result = run(project, "--runbook", "--runbook-format=markdown")
    assert result.ret == 0
    result.stdout.fnmatch_lines(
        [
            "| P1 | backend | `health/test_checks.py::test_api_answers` | API endpoints returning 500 errors. "
            "| fix-backend-issues api_errors (kb: backend_not_starting) |",
            "*### fix-backend-issues/api_errors: API endpoints returning errors",
            "*### database_locked: Database locked",
        ]
    )


def test_runbook_md_is_in_sync_with_the_checks():
    done = subprocess.run(
        [sys.executable, "-m", "remediation.catalog"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == (ROOT / "RUNBOOK.md").read_text(), (
        "RUNBOOK.md is out of date: run `python3 -m remediation.catalog --write`"
    )


def test_every_script_type_has_a_knowledge_base_entry():
    from remediation import knowledge

    for script, types in scripts().items():
        for issue_type in types:
            assert knowledge.entry(script, issue_type)["solutions"]
    for name in ("backend_not_starting", "frontend_build_errors", "database_locked"):
        assert knowledge.entry("escalate", kb=name)["causes"]
