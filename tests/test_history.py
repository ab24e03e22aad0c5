"""Bounded report history: a year of scheduled runs leaves a bounded set of reports, never the open incident's."""

import json
from datetime import UTC, datetime, timedelta

import pytest
from report_support import project, run  # noqa: F401 (fixture)

from remediation.reports import history

START = datetime(2026, 11, 30, 0, 0, tzinfo=UTC)
EVERY = timedelta(minutes=5)  # deploy/fossawork-health.timer


def write_run(report_dir, started, severity, failing=(), target="prod"):
    """One run as the writers leave it: incident-<id>.json and .html, refreshing latest.*; returns the run id."""
    run_id = history.new_run_id(started)
    incident = {
        "run_id": run_id,
        "severity": severity,
        "targets": [{"name": target, "description": "", "source": "targets.toml"}],
        "failures": [{"target": target, "id": check} for check in failing],
    }
    for ext, text in (("json", json.dumps(incident)), ("html", f"<html>{run_id}</html>")):
        (report_dir / f"incident-{run_id}.{ext}").write_text(text)
        (report_dir / f"latest.{ext}").write_text(text)
    return run_id


def runs_left(report_dir):
    return {run.run_id for run in history.runs_in(report_dir)}


def test_300_scheduled_runs_leave_a_bounded_history_and_the_open_incident(tmp_path):
    keep = history.parse_keep(history.DEFAULT_KEEP, "the default")
    others = {"alert-state.json": "{}", "remediation-audit.jsonl": "{}\n", "incident-notes.txt": "mine"}
    others |= {"incident-20261129T000000Z-nothex.json": "{}", ".incident-x.json.1234.tmp": ""}
    for name, text in others.items():
        (tmp_path / name).write_text(text)
    db_alert = {"target": "prod", "check": "health/test_database.py::test_db", "since": None}
    ids = []
    for number in range(300):
        now = START + number * EVERY
        if number < 50:  # a quiet evening
            ids.append(write_run(tmp_path, now, "healthy"))
        elif number < 120:  # a P2 incident; its alert opens with the first failing run and is never resolved
            ids.append(write_run(tmp_path, now, "p2", [db_alert["check"]]))
            db_alert["since"] = db_alert["since"] or f"{now + timedelta(seconds=2):%Y-%m-%dT%H:%M:%SZ}"
        else:  # then a P3 check flaps: every other run fails
            ids.append(write_run(tmp_path, now, "p3" if number % 2 else "healthy", ["health/test_x.py::test_flap"]))
        history.prune(tmp_path, keep, now, ids[-1], {"key": db_alert} if db_alert["since"] else {})
    left = runs_left(tmp_path)
    # 251 runs are not folded away (one healthy run for the quiet evening, 70 P2, 180 flapping): 200 stay, plus the
    # run that opened the still-open alert.
    assert len(left) == keep.runs + 1
    assert set(ids[-keep.runs :]) <= left and ids[50] in left
    assert len(list(tmp_path.glob("incident-*-*.html"))) == len(left)
    for name, text in others.items():
        assert (tmp_path / name).read_text() == text, name
    assert (tmp_path / "latest.html").read_text() == f"<html>{ids[-1]}</html>"
    assert json.loads((tmp_path / "latest.json").read_text())["run_id"] == ids[-1]


def test_consecutive_healthy_runs_of_one_target_collapse_to_the_newest(tmp_path):
    keep = history.Keep(days=None, runs=None)
    prod = [write_run(tmp_path, START + n * EVERY, "healthy") for n in range(5)]
    failed = write_run(tmp_path, START + 5 * EVERY, "p3", ["c"])
    recovered = [write_run(tmp_path, START + n * EVERY, "healthy") for n in range(6, 9)]
    staging = [write_run(tmp_path, START + n * EVERY, "healthy", target="staging") for n in range(9, 11)]
    history.prune(tmp_path, keep, START + 11 * EVERY, staging[-1], {})
    assert runs_left(tmp_path) == {prod[-1], failed, recovered[-1], staging[-1]}


def test_runs_older_than_the_limit_go_except_the_newest_failure_and_an_open_alerts_opener(tmp_path):
    keep = history.parse_keep("7d", "--keep-reports")
    old = START - timedelta(days=10)
    opener = write_run(tmp_path, old, "p1", ["health/test_api.py::test_up"])
    write_run(tmp_path, old + EVERY, "p2", ["health/test_db.py::test_db"])
    newest_failure = write_run(tmp_path, old + 2 * EVERY, "p3", ["health/test_x.py::test_x"])
    recent = write_run(tmp_path, START, "healthy")
    alert = {"target": "prod", "check": "health/test_api.py::test_up", "since": f"{old:%Y-%m-%dT%H:%M:%SZ}"}
    removed = history.prune(tmp_path, keep, START, recent, {"key": alert})
    assert runs_left(tmp_path) == {opener, newest_failure, recent}
    assert [len(run.files) for run in removed] == [2]


def test_a_report_whose_json_cannot_be_read_is_never_folded_into_a_healthy_streak(tmp_path):
    keep = history.Keep(days=None, runs=None)
    first = write_run(tmp_path, START, "healthy")
    (tmp_path / f"incident-{first}.json").write_text("{not json")
    second = write_run(tmp_path, START + EVERY, "healthy")
    history.prune(tmp_path, keep, START + EVERY, second, {})
    assert runs_left(tmp_path) == {first, second}


def test_a_report_whose_json_cannot_be_read_is_not_an_open_incident_and_ages_out(tmp_path):
    stale = write_run(tmp_path, START - timedelta(days=8), "p1", ["c"])
    (tmp_path / f"incident-{stale}.json").write_text("{not json")
    recent = write_run(tmp_path, START, "healthy")
    history.prune(tmp_path, history.parse_keep("7d", "--keep-reports"), START, recent, {})
    assert runs_left(tmp_path) == {recent}


@pytest.mark.parametrize(
    "text, expected",
    [("7d", "7d"), ("200", "200"), ("7d,200", "7d,200"), (" 7D , 200 ", "7d,200"), ("all", "all")],
)
def test_a_history_limit_reads_days_runs_both_or_all(text, expected):
    assert str(history.parse_keep(text, "--keep-reports")) == expected


@pytest.mark.parametrize("text", ["", "0", "0d", "7d,0", "200,7d", "1.5d", "99999d", "week", "-3"])
def test_a_bad_history_limit_is_one_line_naming_its_source(text):
    with pytest.raises(ValueError, match=r"^--keep-reports: .* use days \('7d', at most 36500\)") as caught:
        history.parse_keep(text, "--keep-reports")
    assert "\n" not in str(caught.value)


def test_real_runs_keep_only_the_newest_and_say_what_they_pruned(project):  # noqa: F811
    for _ in range(3):
        result = run(project, "--keep-reports=1")
        result.assert_outcomes(passed=1, failed=2, skipped=1)
    result.stdout.fnmatch_lines(["report history: removed the reports of 1 earlier run(s) (keeping 1, see *)"])
    reports = project.path / "reports"
    latest = json.loads((reports / "latest.json").read_text())["run_id"]
    assert sorted(p.name for p in reports.iterdir()) == [
        "fingerprints",  # the last and last healthy runs' fingerprints: never pruned
        f"incident-{latest}.html",
        f"incident-{latest}.json",
        "latest.html",
        "latest.json",
    ]


def test_a_bad_history_limit_in_the_environment_stops_the_run_with_exit_4(project, monkeypatch):  # noqa: F811
    monkeypatch.setenv(history.KEEP_ENV, "forever")
    result = run(project)
    assert result.ret == 4
    result.stderr.fnmatch_lines([f"ERROR: environment variable {history.KEEP_ENV}: 'forever' is not a history limit*"])
    assert not (project.path / "reports").exists()
