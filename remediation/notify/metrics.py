"""``--prometheus-textfile PATH``: the run's results for node_exporter's textfile collector.

Per check (labels target, check = node id, component, severity):

* ``fossawork_health_check_up`` 1 passed, 0 failed (waived failures too: the
  check *is* failing), NaN skipped (not observed this run, so no alert fires);
* ``fossawork_health_check_waived`` 1 when a waiver (remediation.gate) covers the failure;
* ``fossawork_health_check_duration_seconds`` setup + call + teardown of the last attempt.

Per run (label target): ``fossawork_health_last_run_timestamp_seconds``,
``fossawork_health_run_duration_seconds`` and
``fossawork_health_incident_severity``: 0 healthy, else 1..4 for the worst
failing check, P1..P4 (lower is worse, so "P2 or worse" is ``>= 1 and <= 2``;
waived failures do not count).

The file is written to a temporary file in the same directory and renamed over
the old one, so the collector never reads half a file. Only the xdist
controller writes it.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from fixtures.target import targets
from remediation.results import Results, results_of

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

pytest_plugins = ["remediation.results"]

HELP_TEXTFILE = (
    "Write the results in Prometheus text format to PATH (atomically), for node_exporter's textfile collector "
    "(e.g. /var/lib/node_exporter/textfile_collector/fossawork_health.prom)."
)

# name: HELP text — one declaration of every metric, in output order.
METRICS = {
    "fossawork_health_check_up": "1 when the health check passed, 0 when it failed, NaN when it was skipped.",
    "fossawork_health_check_waived": "1 when the check failed but a waiver covers it, else 0.",
    "fossawork_health_check_duration_seconds": "Seconds the check took (setup, call, teardown).",
    "fossawork_health_last_run_timestamp_seconds": "Unix time the last health run finished.",
    "fossawork_health_incident_severity": (
        "Worst failing severity of the last run: 0 healthy, 1=P1 critical, 2=P2 high, 3=P3 medium, 4=P4 low."
    ),
    "fossawork_health_run_duration_seconds": "Seconds the last health run took.",
}
PER_CHECK = {"fossawork_health_check_up", "fossawork_health_check_waived", "fossawork_health_check_duration_seconds"}


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("fossawork", "FossaWork V2 health checks")
    group.addoption("--prometheus-textfile", default=None, metavar="PATH", help=HELP_TEXTFILE)


def pytest_configure(config: pytest.Config) -> None:
    path = config.getoption("prometheus_textfile")
    if path and not hasattr(config, "workerinput"):
        config.pluginmanager.register(TextfileWriter(config, Path(path)), "fossawork-metrics")


def pytest_unconfigure(config: pytest.Config) -> None:
    plugin = config.pluginmanager.get_plugin("fossawork-metrics")
    if plugin is not None:
        config.pluginmanager.unregister(plugin)


def render(names: list[str], results: Results, finished: float, duration: float) -> CollectorRegistry:
    """The run's gauges for the targets ``names`` (a fresh registry: only this run's samples)."""
    # Imported here, not with the plugin: only runs given --prometheus-textfile pay for prometheus_client (~10 ms
    # of every run's start-up, a P1 verdict's included).
    from prometheus_client import CollectorRegistry, Gauge

    registry = CollectorRegistry()
    check_labels = ("target", "check", "component", "severity")
    gauges = {
        name: Gauge(name, help_text, check_labels if name in PER_CHECK else ("target",), registry=registry)
        for name, help_text in METRICS.items()
    }
    for check in results.checks.values():
        labels = (check.target, check.nodeid, check.component or "", check.severity or "")
        up = {"passed": 1.0, "failed": 0.0, "waived": 0.0}.get(check.status, math.nan)
        gauges["fossawork_health_check_up"].labels(*labels).set(up)
        gauges["fossawork_health_check_waived"].labels(*labels).set(1.0 if check.status == "waived" else 0.0)
        gauges["fossawork_health_check_duration_seconds"].labels(*labels).set(check.duration)
    for target in names:
        gauges["fossawork_health_last_run_timestamp_seconds"].labels(target).set(finished)
        gauges["fossawork_health_incident_severity"].labels(target).set(float(results.incident_rank(target)))
        gauges["fossawork_health_run_duration_seconds"].labels(target).set(duration)
    return registry


class TextfileWriter:
    """Collects the run's results on the controller and writes the textfile at session finish."""

    def __init__(self, config: pytest.Config, path: Path):
        self.config = config
        self.path = path
        self.started = time.monotonic()
        self.error: str | None = None

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        results = results_of(self.config)
        registry = render(list(targets(self.config)), results, time.time(), time.monotonic() - self.started)
        from prometheus_client import write_to_textfile  # see render()

        try:
            # write_to_textfile writes a temporary file beside PATH and renames it: the collector never sees half.
            self.path.parent.mkdir(parents=True, exist_ok=True)
            write_to_textfile(str(self.path), registry)
        except OSError as exc:
            # The checks' results matter more than the metrics: report, do not crash the run.
            self.error = f"{exc.__class__.__name__}: {exc}"

    def pytest_terminal_summary(self, terminalreporter) -> None:
        if self.error:
            terminalreporter.write_line(f"prometheus textfile {self.path} NOT written: {self.error}", red=True)
        else:
            count = len(results_of(self.config).checks)
            terminalreporter.write_line(f"prometheus textfile: {count} check(s) -> {self.path}")
