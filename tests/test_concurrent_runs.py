"""Two runs at once against one target (cron overlapping an engineer): both finish, both report, one remediates."""

import json
import subprocess
import sys
from pathlib import Path

from sandbox import Sandbox

ROOT = Path(__file__).resolve().parent.parent


def test_two_remediating_runs_at_once_both_report_and_only_one_acts(tmp_path):
    with Sandbox(layout="runbook", faults=["db_bloated"]) as sandbox:
        reports = tmp_path / "reports"
        args = [
            sys.executable,
            "-m",
            "pytest",
            "health/test_database.py",
            f"--target-file={sandbox.paths['targets_file']}",
            "--target",
            "live",
            "--remediate",
            f"--report-dir={reports}",
            "-q",
            "-p",
            "no:cacheprovider",
        ]
        runs = [
            subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            for _ in range(2)
        ]
        outputs = [run.communicate(timeout=300)[0] for run in runs]
        assert all(run.returncode in (0, 1) for run in runs), outputs  # finished: no crash, no usage error
        incidents = sorted(reports.glob("incident-*.json"))
        assert len(incidents) == 2, outputs
        assert len({p.name for p in reports.glob("incident-*.html")}) == 2
        statuses = sorted(json.loads(p.read_text())["remediation"]["status"] for p in incidents)
        acted = [s for s in statuses if s.startswith("ran ")]
        waited = [s for s in statuses if "remediation in progress" in s]
        assert (len(acted), len(waited)) == (1, 1), statuses
