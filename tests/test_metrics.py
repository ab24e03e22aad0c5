"""remediation.notify.metrics: the Prometheus textfile is complete, parseable and replaced atomically."""

import time

from production_support import suite  # noqa: F401 (fixture)
from prometheus_client.parser import text_string_to_metric_families

CHECKS = {
    "test_checks.py::test_api_answers": ("backend", "p1"),
    "test_checks.py::test_db_answers": ("database", "p2"),
    "test_checks.py::test_frontend_builds": ("frontend", "p3"),
    "test_checks.py::test_logs_are_small": ("performance", "p4"),
}


def _read(path) -> dict:
    """{metric name: {frozenset(labels): value}} of a textfile."""
    return {
        family.name: {frozenset(s.labels.items()): s.value for s in family.samples}
        for family in text_string_to_metric_families(path.read_text())
    }


def _check_values(metrics: dict, name: str) -> dict:
    return {dict(labels)["check"]: value for labels, value in metrics[name].items()}


def test_the_textfile_has_one_series_per_check_and_the_run_gauges(suite):  # noqa: F811
    suite.fail("db", "logs")
    before = time.time()
    suite.run("--prometheus-textfile=textfile/fossawork_health.prom").assert_outcomes(passed=2, failed=2)
    metrics = _read(suite.path / "textfile" / "fossawork_health.prom")
    assert set(metrics) == {
        "fossawork_health_check_up",
        "fossawork_health_check_waived",
        "fossawork_health_check_duration_seconds",
        "fossawork_health_last_run_timestamp_seconds",
        "fossawork_health_incident_severity",
        "fossawork_health_run_duration_seconds",
    }
    for name in ("fossawork_health_check_up", "fossawork_health_check_duration_seconds"):
        labels = [dict(series) for series in metrics[name]]
        assert sorted(labels, key=lambda x: x["check"]) == [
            {"target": "prod", "check": check, "component": component, "severity": severity}
            for check, (component, severity) in sorted(CHECKS.items())
        ]
    assert _check_values(metrics, "fossawork_health_check_up") == {
        "test_checks.py::test_api_answers": 1.0,
        "test_checks.py::test_db_answers": 0.0,
        "test_checks.py::test_frontend_builds": 1.0,
        "test_checks.py::test_logs_are_small": 0.0,
    }
    run = {name: next(iter(metrics[name].items())) for name in metrics if "check" not in name}
    assert all(dict(labels) == {"target": "prod"} for labels, _ in run.values())
    assert run["fossawork_health_incident_severity"][1] == 2.0  # the worst failure is P2
    assert before <= run["fossawork_health_last_run_timestamp_seconds"][1] <= time.time()
    assert run["fossawork_health_run_duration_seconds"][1] >= 0
    assert [p.name for p in (suite.path / "textfile").iterdir()] == ["fossawork_health.prom"]  # no temp file left


def test_a_healthy_run_reports_incident_severity_0(suite):  # noqa: F811
    suite.run("--prometheus-textfile=health.prom").assert_outcomes(passed=4)
    metrics = _read(suite.path / "health.prom")
    assert list(metrics["fossawork_health_incident_severity"].values()) == [0.0]


def test_a_waived_check_is_down_but_marked_waived_and_makes_no_incident(suite):  # noqa: F811
    (suite.path / "waivers.toml").write_text(
        '[[waiver]]\ncheck = "test_checks.py::test_api_answers"\nreason = "r"\nowner = "o"\nexpires = 2999-01-01\n'
    )
    suite.fail("api")
    suite.run("--waivers=waivers.toml", "--prometheus-textfile=health.prom")
    metrics = _read(suite.path / "health.prom")
    assert _check_values(metrics, "fossawork_health_check_up")["test_checks.py::test_api_answers"] == 0.0
    assert _check_values(metrics, "fossawork_health_check_waived")["test_checks.py::test_api_answers"] == 1.0
    assert list(metrics["fossawork_health_incident_severity"].values()) == [0.0]


def test_under_xdist_the_controller_writes_every_check(suite):  # noqa: F811
    suite.fail("api")
    suite.run("-n", "2", "--prometheus-textfile=health.prom").assert_outcomes(passed=3, failed=1)
    metrics = _read(suite.path / "health.prom")
    assert set(_check_values(metrics, "fossawork_health_check_up")) == set(CHECKS)
    assert list(metrics["fossawork_health_incident_severity"].values()) == [1.0]


def test_an_unwritable_textfile_is_reported_without_failing_the_run(suite):  # noqa: F811
    (suite.path / "blocked").write_text("a file where a directory should be")
    result = suite.run("--prometheus-textfile=blocked/health.prom")
    assert result.ret == 0
    result.stdout.fnmatch_lines(["prometheus textfile blocked/health.prom NOT written: *"])
