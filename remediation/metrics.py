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
import os
import time
from pathlib import Path

import pytest

from fixtures.target import targets
from remediation.outcomes import Results

pytest_plugins = ["remediation.outcomes"]

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


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _value(number: float) -> str:
    return "NaN" if math.isnan(number) else repr(float(number))


def render(names: list[str], results: Results, finished: float, duration: float) -> str:
    """The exposition text for the run's targets ``names``: HELP and TYPE once per metric, then its samples."""
    samples: dict[str, list[tuple[str, float]]] = {name: [] for name in METRICS}
    for check in results.checks.values():
        labels = (
            f'target="{_label(check.target)}",check="{_label(check.nodeid)}",'
            f'component="{_label(check.component or "")}",severity="{_label(check.severity or "")}"'
        )
        up = {"passed": 1.0, "failed": 0.0, "waived": 0.0}.get(check.status, math.nan)
        samples["fossawork_health_check_up"].append((labels, up))
        samples["fossawork_health_check_waived"].append((labels, 1.0 if check.status == "waived" else 0.0))
        samples["fossawork_health_check_duration_seconds"].append((labels, check.duration))
    for target in names:
        run_labels = f'target="{_label(target)}"'
        samples["fossawork_health_last_run_timestamp_seconds"].append((run_labels, finished))
        samples["fossawork_health_incident_severity"].append((run_labels, float(results.incident_rank(target))))
        samples["fossawork_health_run_duration_seconds"].append((run_labels, duration))
    lines = []
    for name, help_text in METRICS.items():
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge"]
        lines += [f"{name}{{{labels}}} {_value(value)}" for labels, value in samples[name]]
    return "\n".join(lines) + "\n"


def write_atomically(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` via a temporary file in the same directory and os.replace."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # node_exporter reads only *.prom files, so the temporary name must not end in .prom.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


class TextfileWriter:
    """Collects the run's results on the controller and writes the textfile at session finish."""

    def __init__(self, config: pytest.Config, path: Path):
        self.config = config
        self.path = path
        self.results = Results()
        self.started = time.monotonic()
        self.error: str | None = None

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self.results.add(report)

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        text = render(list(targets(self.config)), self.results, time.time(), time.monotonic() - self.started)
        try:
            write_atomically(self.path, text)
        except OSError as exc:
            # The checks' results matter more than the metrics: report, do not crash the run.
            self.error = f"{exc.__class__.__name__}: {exc}"

    def pytest_terminal_summary(self, terminalreporter) -> None:
        if self.error:
            terminalreporter.write_line(f"prometheus textfile {self.path} NOT written: {self.error}", red=True)
        else:
            terminalreporter.write_line(f"prometheus textfile: {len(self.results.checks)} check(s) -> {self.path}")
