"""Several targets in one run: every check runs per target, and the target is in every report row and metric."""

import json
import subprocess
import sys
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parent.parent

# Two deployments seen from a monitoring host: nothing listens on their ports, and their files are elsewhere.
TARGETS = """
[east]
host = "remote"
api_url = "http://127.0.0.1:9"
frontend_url = "http://127.0.0.1:9"

[west]
extends = "east"
api_url = "http://127.0.0.1:7"
"""


def test_two_targets_run_every_check_once_each_and_label_every_result(tmp_path):
    targets = tmp_path / "targets.toml"
    targets.write_text(TARGETS)
    reports, metrics, junit = tmp_path / "reports", tmp_path / "health.prom", tmp_path / "junit.xml"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-m",
            "p1",
            f"--target-file={targets}",
            "--all-targets",
            f"--report-dir={reports}",
            f"--prometheus-textfile={metrics}",
            f"--junitxml={junit}",
            "-q",
            "-rs",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1, done.stdout[-3000:]
    assert "test_api_endpoint_answers_200_with_json[east-health]" in junit.read_text()
    assert "test_api_endpoint_answers_200_with_json[west-health]" in junit.read_text()
    # Host-level checks cannot observe a remote host: skipped, with the reason.
    assert "host-level check: profile 'east' says host = 'remote'" in done.stdout
    incident = json.loads((reports / "latest.json").read_text())
    assert {t["name"] for t in incident["targets"]} == {"east", "west"}
    assert {f["target"] for f in incident["failures"]} == {"east", "west"}
    up = [
        s
        for family in text_string_to_metric_families(metrics.read_text())
        for s in family.samples
        if s.name == "fossawork_health_check_up"
    ]
    assert {s.labels["target"] for s in up} == {"east", "west"}
    assert len(up) == len({(s.labels["target"], s.labels["check"]) for s in up})  # one series per target and check
