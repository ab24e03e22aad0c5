"""The HTML incident page, rendered in Chromium: the banner in the first screen, then the failures by severity."""

import json
import subprocess
import sys

from production_support import receiver  # noqa: F401 (fixture)
from report_support import ROOT, project, row_messages, run  # noqa: F401 (fixture)

from remediation.reports.html_report import failure_html, result_row
from remediation.results import CheckResult

sys.path.insert(0, str(ROOT / "bench"))
from incident_picture import FIRST_SCREEN, page_of  # noqa: E402  (bench/ is a folder of scripts)

RED, GREEN = "rgb(183, 28, 28)", "rgb(27, 110, 32)"


def _inside_first_screen(box: dict) -> bool:
    return (
        box["x"] >= 0
        and box["y"] >= 0
        and box["x"] + box["width"] <= FIRST_SCREEN["width"]
        and box["y"] + box["height"] <= FIRST_SCREEN["height"]
    )


def _latest(inner):
    return inner.path / "reports" / "latest.html"


def test_a_p1_page_opens_with_a_red_banner_inside_the_first_screen(project):  # noqa: F811
    run(project).assert_outcomes(passed=1, failed=2, skipped=1)
    text = _latest(project).read_text()
    assert "<link" not in text and 'src="http' not in text  # one self-contained file
    with page_of(_latest(project)) as page:
        banner = page.locator("#incident-banner")
        assert banner.is_visible()
        assert _inside_first_screen(banner.bounding_box()), banner.bounding_box()
        words = banner.inner_text()
        for expected in ("P1 Critical", "Respond now", "Target local: inner test target", "2 of 4 checks failing"):
            assert expected in words, words
        assert banner.evaluate("e => getComputedStyle(e).backgroundColor") == RED
        assert page.title().startswith("P1 Critical: local - FossaWork health ")
        # The incident comes before the table of every check and the run's details.
        top = {s: page.locator(s).bounding_box()["y"] for s in ("#incident-failures", "#results-table", "#run-details")}
        assert banner.bounding_box()["y"] < top["#incident-failures"] < top["#results-table"] < top["#run-details"], top
        assert page.locator("#results-table tbody tr").count() == 4
        groups = page.locator(".severity-group h2").all_inner_texts()
        assert groups == ["P1 Critical: 1 failing", "P2 High: 1 failing"]
        card = page.locator(".severity-p1 .failure").inner_text()
        for expected in (
            "API endpoints returning 500 errors.",
            "observed 500 from /api/health after login with [REDACTED], expected 200",
            "dry run: python3 -m remediation.scripts.fix_backend_issues api_errors --target-file targets.toml "
            "--target local",
            "then: python3 -m remediation.scripts.fix_backend_issues api_errors --target-file targets.toml "
            "--target local --execute",
            "Backend not starting (backend_not_starting)",
            "not run (run with --remediate to apply the fix and re-check)",
            "not tracked: no open alert for this check",
        ):
            assert expected in card, card


def test_a_healthy_page_opens_with_a_green_banner_inside_the_first_screen(project):  # noqa: F811
    run(project, "-m", "p3").assert_outcomes(passed=1)
    with page_of(_latest(project)) as page:
        banner = page.locator("#incident-banner")
        assert banner.is_visible()
        assert _inside_first_screen(banner.bounding_box()), banner.bounding_box()
        assert banner.evaluate("e => getComputedStyle(e).backgroundColor") == GREEN
        words = banner.inner_text()
        assert "Healthy" in words and "No response needed" in words and "All 1 checks pass" in words, words
        assert page.locator("#incident-failures").count() == 0


def test_a_skipped_row_shows_the_reason_not_a_python_tuple(project):  # noqa: F811
    run(project).assert_outcomes(passed=1, failed=2, skipped=1)
    outcome, message = row_messages(_latest(project).read_text())["health/test_checks.py::test_skipped"]
    assert (outcome, message) == ("skipped", "not on this host"), message


def test_failing_since_is_the_open_alert_of_the_check_in_the_report_directory(project):  # noqa: F811
    reports = project.path / "reports"
    reports.mkdir()
    check = "health/test_checks.py::test_api_answers_200"
    alert = {"target": "local", "check": check, "severity": "p1", "since": "2026-11-30T02:55:00Z"}
    state = {"version": 1, "open": {"key": alert}}
    (reports / "alert-state.json").write_text(json.dumps(state))
    run(project).assert_outcomes(passed=1, failed=2, skipped=1)
    first, second = json.loads((reports / "latest.json").read_text())["failures"]
    assert (first["id"], first["since"], second["since"]) == (check, "2026-11-30T02:55:00+00:00", None)
    with page_of(_latest(project)) as page:
        assert "Failing since\n02:55 UTC, 30 Nov 2026" in page.locator(".severity-p1 .failure").inner_text()


def test_an_alert_this_run_opens_is_where_the_failure_started(project, receiver, monkeypatch):  # noqa: F811
    monkeypatch.setenv("PAGERDUTY_ROUTING_KEY", "routing-key-0123456789")
    project.makeconftest(
        'pytest_plugins = ["fixtures.target", "remediation.catalog", "remediation.notify.alerts", '
        '"remediation.plugin"]\n'
    )
    run(project, f"--alert-webhook={receiver.url}").assert_outcomes(passed=1, failed=2, skipped=1)
    assert len(receiver.posts) == 2  # P1 and P2 (the default --alert-severity) open an alert each
    reports = project.path / "reports"
    opened = {a["check"]: a["since"] for a in json.loads((reports / "alert-state.json").read_text())["open"].values()}
    failures = json.loads((reports / "latest.json").read_text())["failures"]
    assert {f["id"]: f["since"] for f in failures} == {c: s.replace("Z", "+00:00") for c, s in opened.items()}


def test_a_remediated_check_shows_its_outcome_and_why():
    failure = {
        "id": "health/test_database.py::test_database_passes_quick_check",
        "target": "prod",
        "component": "database",
        "severity": "p1",
        "symptom": "Database corruption.",
        "message": "observed 3 problem lines, expected 'ok'",
        "since": None,
        "fix": {
            "escalate": False,
            "cause": None,
            "dry_run_command": "python3 -m x recover",
            "command": "python3 -m x recover -x",
        },
        "knowledge_base": {"id": "db", "title": "Database corruption", "causes": ["crash"], "solutions": ["recover"]},
        "remediation": {
            "outcome": "fixed with loss",
            "reason": "work_orders: 30 of 1000 rows lost",
            "command": "c",
            "dry_run_command": "d",
            "exit_code": 0,
            "output": "",
            "recheck": "passed",
            "loss": {"work_orders": {"before": 1000, "after": 970, "lost": 30, "orphans": 0}},
        },
    }
    assert "fixed with loss: work_orders: 30 of 1000 rows lost (fix exit 0)" in failure_html(failure)


def test_a_waived_row_shows_its_waiver_not_an_empty_message():
    waiver = {
        "check": "health/test_x.py::test_y",
        "reason": "fix ships in 2.4",
        "owner": "ops",
        "expires": "2026-12-31",
    }
    row = result_row(CheckResult("health/test_x.py::test_y", {"severity": "p2"}, status="waived", waiver=waiver))
    assert '<td class="col-result">waived</td>' in row, row
    assert "waived: fix ships in 2.4 (owner ops, until 2026-12-31)" in row, row


PLUGIN_MODULES = """
import sys, pytest
class Modules:
    def pytest_unconfigure(self):
        print("MODULES", " ".join(sorted(sys.modules)))
sys.exit(pytest.main(["--runbook", "-q", "-p", "no:cacheprovider"], plugins=[Modules()]))
"""


def test_a_run_imports_neither_pytest_html_nor_jinja_nor_looponfail():
    # The suite writes its page itself; where the environment still has pytest-html, addopts blocks its entry points.
    done = subprocess.run([sys.executable, "-c", PLUGIN_MODULES], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    (line,) = [line for line in done.stdout.splitlines() if line.startswith("MODULES ")]
    modules = set(line.split()[1:])
    assert "xdist.plugin" in modules  # the list is whole: xdist itself (-n) still loads
    assert not {"pytest_html", "jinja2", "xdist.looponfail"} & modules, sorted(modules)
