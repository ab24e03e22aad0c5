"""remediation.gate: which failures fail the run (--exit-severity), re-runs (--confirm), waivers, maintenance."""

import datetime as dt
import re
import subprocess
import sys
import xml.etree.ElementTree as ET

from production_support import MAIN, suite  # noqa: F401 (fixture)

from remediation.gate import load_waivers


def _junit_properties(path, name):
    case = next(c for c in ET.parse(path).iter("testcase") if c.get("name") == name)
    return {p.get("name"): p.get("value") for p in case.iter("property")}


def test_exit_severity_p2_exits_0_when_only_p3_and_p4_checks_fail(suite):  # noqa: F811
    suite.fail("frontend", "logs")
    result = suite.run("--exit-severity=p2")
    result.assert_outcomes(passed=2, failed=2)
    assert result.ret == 0
    result.stdout.fnmatch_lines(["exit-severity p2: 2 failed check(s) are all below P2; exit status 0"])


def test_exit_severity_p2_exits_1_when_a_p2_check_fails(suite):  # noqa: F811
    suite.fail("db", "logs")
    assert suite.run("--exit-severity=p2").ret == 1


def test_without_exit_severity_any_failure_fails_the_run(suite):  # noqa: F811
    suite.fail("logs")
    assert suite.run().ret == 1


def test_confirm_2_does_not_fail_a_check_that_fails_once_then_passes(suite):  # noqa: F811
    result = suite.pytester.runpytest("test_flaky.py", "--confirm=2", "--junitxml=junit.xml")
    result.assert_outcomes(passed=1)
    assert (suite.path / "calls.txt").read_text() == "2"
    assert _junit_properties(suite.path / "junit.xml", "test_flaky_endpoint_answers")["attempts"] == "2"
    result.stdout.fnmatch_lines(
        ["confirm: test_flaky.py::test_flaky_endpoint_answers passed on the last attempt (2 attempts)"]
    )


def test_confirm_2_fails_a_check_that_fails_every_attempt(suite):  # noqa: F811
    (suite.path / "always.txt").write_text("always")
    result = suite.pytester.runpytest("test_flaky.py", "--confirm=2")
    result.assert_outcomes(failed=1)
    assert (suite.path / "calls.txt").read_text() == "3"
    result.stdout.fnmatch_lines(
        [
            "*observed a dropped connection on call 3, expected 200",
            "confirm: test_flaky.py::test_flaky_endpoint_answers failed every attempt (3 attempts)",
        ]
    )


def test_without_confirm_a_single_failure_fails_the_check(suite):  # noqa: F811
    suite.pytester.runpytest("test_flaky.py").assert_outcomes(failed=1)


def _waive(suite, check, expires):  # noqa: F811
    (suite.path / "waivers.toml").write_text(
        f'[[waiver]]\ncheck = "{check}"\nreason = "disk swap scheduled"\n'
        f'owner = "ops@example.com"\nexpires = {expires}\n'
    )


def test_a_waived_failing_check_is_reported_as_waived_and_does_not_fail_the_run(suite):  # noqa: F811
    _waive(suite, "test_checks.py::test_db_*", "2999-12-31")
    suite.fail("db")
    result = suite.run("--waivers=waivers.toml", "--junitxml=junit.xml")
    assert result.ret == 0
    assert result.parseoutcomes() == {"passed": 3, "waived": 1}
    result.stdout.fnmatch_lines(
        [
            "waived: test_checks.py::test_db_answers failed, waived until 2999-12-31 by ops@example.com:"
            " disk swap scheduled"
        ]
    )
    case = next(c for c in ET.parse(suite.path / "junit.xml").iter("testcase") if c.get("name") == "test_db_answers")
    skipped = case.find("skipped")
    assert skipped.get("type") == "pytest.xfail"
    assert skipped.get("message") == "waived: disk swap scheduled (owner ops@example.com, until 2999-12-31)"
    assert "'owner': 'ops@example.com'" in _junit_properties(suite.path / "junit.xml", "test_db_answers")["waived"]


def test_an_expired_waiver_is_ignored_and_flagged(suite):  # noqa: F811
    yesterday = dt.date.today() - dt.timedelta(days=1)
    _waive(suite, "test_checks.py::test_db_answers", yesterday.isoformat())
    suite.fail("db")
    result = suite.run("--waivers=waivers.toml", "--junitxml=junit.xml")
    result.assert_outcomes(passed=3, failed=1)
    result.stdout.fnmatch_lines(
        [
            f"WARNING: waiver for test_checks.py::test_db_answers (owner ops@example.com) expired on {yesterday}"
            " and is ignored; renew or remove it"
        ]
    )
    assert "waiver_expired" in _junit_properties(suite.path / "junit.xml", "test_db_answers")


def test_a_waiver_without_owner_is_a_usage_error(suite):  # noqa: F811
    (suite.path / "waivers.toml").write_text('[[waiver]]\ncheck = "x"\nreason = "r"\nexpires = 2030-01-01\n')
    result = suite.run("--waivers=waivers.toml")
    assert result.ret == 4
    result.stderr.fnmatch_lines(["*--waivers waivers.toml: waiver #1: 'owner' must be a non-empty string, got None"])


def test_a_maintenance_time_that_is_not_iso_8601_is_a_usage_error(suite):  # noqa: F811
    result = suite.run("--maintenance-until=tomorrow")
    assert result.ret == 4
    result.stderr.fnmatch_lines(["*--maintenance-until: 'tomorrow' is not an ISO 8601 time*"])


def test_a_waiver_that_matches_no_collected_check_is_a_usage_error_that_lists_it(suite):  # noqa: F811
    entry = '[[waiver]]\ncheck = "{}"\nreason = "r"\nowner = "{}"\nexpires = 2999-12-31\n'
    (suite.path / "waivers.toml").write_text(
        entry.format("test_checks.py::test_db_*", "dba@example.com")
        + entry.format("test_checks.py::test_log_file_is_under_limit[*]", "ops@example.com")
    )
    result = suite.run("--waivers=waivers.toml", "-m", "p1")  # the waiver of the P2 check counts before -m
    assert result.ret == 4
    result.stderr.fnmatch_lines(
        [
            "ERROR: --waivers waivers.toml: 1 waiver(s) match no collected check, so they would waive nothing; "
            "fix the check id or remove them: "
            "#2 'test_checks.py::test_log_file_is_under_limit[*]' (owner ops@example.com)"
        ]
    )
    result.assert_outcomes()


def test_under_xdist_an_unmatched_waiver_runs_nothing_and_exits_4_with_one_line(suite):  # noqa: F811
    _waive(suite, "test_checks.py::test_no_such_check", "2999-12-31")
    result = suite.pytester.runpytest_subprocess("test_checks.py", "-n", "2", "--waivers=waivers.toml")
    assert result.ret == 4
    result.stdout.fnmatch_lines(["ERROR: --waivers waivers.toml: 1 waiver(s) match no collected check, *"])
    assert "INTERNALERROR" not in result.stdout.str() + result.stderr.str()
    assert "passed" not in result.stdout.str()


def test_a_waiver_of_a_file_the_run_did_not_collect_is_not_judged(suite):  # noqa: F811
    _waive(suite, "test_checks.py::test_db_answers", "2999-12-31")
    result = suite.pytester.runpytest("test_flaky.py", "--waivers=waivers.toml", "--confirm=1")
    result.assert_outcomes(passed=1)


def _example_waiver_files(tmp_path):
    """Each ``[[waiver]]`` example of README.md and deploy/ (TOML blocks of Markdown, TOML files) as a file."""
    docs = [MAIN / "README.md", *sorted((MAIN / "deploy").glob("*.md")), *sorted((MAIN / "deploy").glob("*.toml"))]
    examples = []
    for doc in docs:
        text = doc.read_text(encoding="utf-8")
        blocks = re.findall(r"```toml\n(.*?)```", text, re.S) if doc.suffix == ".md" else [text]
        for block in (b for b in blocks if "[[waiver]]" in b):
            path = tmp_path / f"example-{len(examples)}.toml"
            path.write_text(block, encoding="utf-8")
            examples.append((doc.relative_to(MAIN), path))
    return examples


def test_every_example_waiver_in_the_docs_matches_a_real_health_check(tmp_path):
    examples = _example_waiver_files(tmp_path)
    assert examples, "no [[waiver]] example found in README.md or deploy/"
    argv = [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", "--target=local"]
    collected = subprocess.run(argv, cwd=MAIN, capture_output=True, text=True)
    nodeids = [line for line in collected.stdout.splitlines() if line.startswith("health/")]
    assert nodeids, collected.stdout + collected.stderr
    for doc, path in examples:
        for waiver in load_waivers(path):
            assert any(waiver.matches(n) for n in nodeids), f"{doc}: {waiver.check!r} matches no check of health/"
        # The real suite agrees: with the example as its waivers file, collection is not a usage error.
        run = subprocess.run([*argv, f"--waivers={path}"], cwd=MAIN, capture_output=True, text=True)
        assert run.returncode == 0, f"{doc}: {run.stdout}{run.stderr}"
