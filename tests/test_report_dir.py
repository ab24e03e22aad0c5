"""A report directory the run cannot write: exit 3 and one line naming it, after the checks' verdict.

Each writer under the report directory is made to fail by what the directory holds (a file where a folder
goes, a folder where a file goes), which fails for root as for anyone; tests/test_deploy.py shows the same
line for a directory the job's user does not own.
"""

import pytest
from production_support import receiver  # noqa: F401 (fixture)
from report_support import project, run  # noqa: F401 (fixture)

LINE = "fossawork-health: cannot write reports to {} ({}); the checks' verdict above stands"
# The inner suite of report_support, with the alerts of remediation.notify as the real suite registers them.
PLUGINS = ["fixtures.target", "remediation.catalog", "remediation.notify.alerts", "remediation.plugin"]


def assert_ends_with_exit_3(result: pytest.RunResult, line: str) -> None:
    """Exit 3; ``line`` is the last line of the run and the only one of its kind; no traceback."""
    __tracebackhide__ = True
    assert result.ret == pytest.ExitCode.INTERNAL_ERROR, result.ret
    assert result.errlines[-1:] == [line], result.errlines[-5:]
    output = result.outlines + result.errlines
    assert sum("cannot write reports" in text for text in output) == 1, output
    assert not any(text.startswith(("Traceback", "INTERNALERROR")) for text in output), output


@pytest.mark.parametrize(("selection", "verdict"), [("p1 or p2", "2 failed"), ("p3", "1 passed")])
def test_a_report_directory_that_cannot_be_made_is_exit_3_after_the_verdict(project, selection, verdict):  # noqa: F811
    project.path.joinpath("not-a-directory").write_text("")
    result = run(project, "-m", selection, "--report-dir", "not-a-directory/reports")
    assert_ends_with_exit_3(result, LINE.format("not-a-directory/reports", "Not a directory"))
    # The verdict as on any run: the results, the incident's summary (with no report to name), pytest's count.
    summary = ["*incident P1: *", "respond now", "P1 health/test_checks.py::test_api_answers_200:"]
    result.stdout.fnmatch_lines([*(summary if selection != "p3" else ["*incident HEALTHY: *"]), f"*{verdict}*"])
    result.stdout.no_fnmatch_line("incident report: *")
    result.stdout.no_fnmatch_line("*Generated html report*")


def test_no_fix_runs_when_its_audit_log_cannot_be_written(project):  # noqa: F811
    project.path.joinpath("not-a-directory").write_text("")
    result = run(project, "--remediate", "--report-dir", "not-a-directory/reports")
    assert_ends_with_exit_3(result, LINE.format("not-a-directory/reports", "Not a directory"))
    not_run = "remediation: not run: the fixes' audit log cannot be written in not-a-directory/reports"
    result.stdout.fnmatch_lines([f"{not_run} (Not a directory); 2 not attempted", "after remediation: P1"])


@pytest.mark.parametrize(
    ("folder", "file", "reason"),
    [
        ("fingerprints", None, "File exists: reports/fingerprints"),
        (None, "latest.json/kept", "Is a directory: reports/latest.json"),
    ],
    ids=["fingerprints", "latest"],
)
def test_a_report_file_that_cannot_be_written_is_exit_3_naming_it(project, folder, file, reason):  # noqa: F811
    reports = project.mkdir("reports")
    if folder:  # a file where the fingerprints' folder goes
        reports.joinpath(folder).write_text("")
    else:  # a folder (not empty) where latest.json goes
        reports.joinpath(file).parent.mkdir()
        reports.joinpath(file).write_text("")
    result = run(project)
    result.assert_outcomes(passed=1, failed=2, skipped=1)
    assert_ends_with_exit_3(result, LINE.format("reports", reason))


def test_alerts_still_page_when_their_state_cannot_be_written(project, receiver, monkeypatch):  # noqa: F811
    project.makeconftest(f"pytest_plugins = {PLUGINS!r}\n")
    monkeypatch.setenv("PAGERDUTY_ROUTING_KEY", "routing-key-0123456789")
    # A folder where the state's lock file goes: the state cannot be locked, read back or written.
    project.mkdir("reports").joinpath("alert-state.json.lock").mkdir()
    result = run(project, "--no-incident-report", f"--alert-webhook={receiver.url}")
    result.assert_outcomes(passed=1, failed=2, skipped=1)
    assert_ends_with_exit_3(result, LINE.format("reports", "Is a directory: reports/alert-state.json.lock"))
    assert sorted(post["event_action"] for post in receiver.posts) == ["trigger", "trigger"]
    result.stdout.fnmatch_lines(["alerts (pagerduty to *): 2 trigger, 0 resolve sent; 2 open"])
