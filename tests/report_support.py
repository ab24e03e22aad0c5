"""Shared by test_report, test_incident_page and test_history: an inner health suite whose failures hold secrets.

Its four checks: a failing P1 (API), a failing P2 (database), a passing P3 (auth) and a skipped P4.
"""

import html
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = json.loads((ROOT / "remediation" / "reports" / "incident.schema.json").read_text())

PASSWORD = "hunter2-very-secret-password"
JWT_SECRET = "jwt-signing-secret-0123456789abcdef"
CHECKS = f'''
import os
import pytest
from observe.secrets import register


@pytest.mark.p1
@pytest.mark.backend
@pytest.mark.fix("fix-backend-issues", "api_errors", kb="backend_not_starting")
def test_api_answers_200():
    """API endpoints returning 500 errors."""
    password = os.environ["FOSSAWORK_TEST_PASSWORD"]
    register(password)  # what the api fixture does with the login password
    print("logging in with", password, "Authorization: Bearer abc.def.ghi")
    pytest.fail(f"observed 500 from /api/health after login with {{password}}, expected 200", pytrace=False)


@pytest.mark.p2
@pytest.mark.database
@pytest.mark.fix("fix-database-issues", "vacuum")
def test_free_pages_under_ratio():
    """Database has many unused pages."""
    pytest.fail("observed 40 % free pages, expected at most 10 %; secret {JWT_SECRET}", pytrace=False)


@pytest.mark.p3
@pytest.mark.auth
@pytest.mark.fix("escalate")
def test_token_is_rejected():
    """Token validation unexpected behavior."""


@pytest.mark.p4
@pytest.mark.performance
@pytest.mark.fix("escalate")
def test_skipped():
    """Cosmetic."""
    pytest.skip("not on this host")
'''


@pytest.fixture
def project(pytester, monkeypatch):
    """An inner project of four checks (P1 and P2 failing) whose failures contain known secrets."""
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    monkeypatch.setenv("FOSSAWORK_TEST_PASSWORD", PASSWORD)
    monkeypatch.setenv("SECRET_KEY", JWT_SECRET)
    pytester.makeconftest('pytest_plugins = ["fixtures.target", "remediation.catalog", "remediation.plugin"]\n')
    pytester.path.joinpath("targets.toml").write_text('[local]\ndescription = "inner test target"\n')
    pytester.mkdir("health").joinpath("test_checks.py").write_text(CHECKS)
    return pytester


def run(project, *args, subprocess=False):
    argv = [
        "-p",
        "no:cacheprovider",
        "-p",
        "no:benchmark",
        "-p",
        "no:anyio",
        "--target-file",
        "targets.toml",
        "--report-dir",
        "reports",
        *args,
    ]
    return project.runpytest_subprocess(*argv) if subprocess else project.runpytest(*argv)


def incident_files(project) -> list[Path]:
    return sorted(project.path.joinpath("reports").glob("incident-*"))


def row_messages(page: str) -> dict:
    """The page's table of every check: check id -> (outcome, message) of its row, as text."""
    rows = re.findall(
        r'<tr class="result[^"]*"><td class="col-result">([^<]*)</td><td class="col-check"><code>([^<]*)</code>'
        r'.*?<td class="col-message">(?:<pre>(.*?)</pre>)?</td></tr>',
        page,
    )
    return {html.unescape(check): (html.unescape(outcome), html.unescape(message)) for outcome, check, message in rows}
