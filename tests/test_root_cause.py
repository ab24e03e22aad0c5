"""Root cause in any selection: ``pytest -m p1`` on a locked database names the lock and its holder."""

import json
import re
import subprocess
import sys
from pathlib import Path

from sandbox import Sandbox

ROOT = Path(__file__).resolve().parent.parent


# The runbook layout's rollback journal: a writer's exclusive lock blocks the P1 database reads, which skip
# naming the lock check. (In WAL mode, v2's, readers are not blocked: those checks pass and observe.)
def test_a_p1_run_on_a_locked_database_names_the_lock_and_its_holder(tmp_path):
    with Sandbox(layout="runbook", faults=["db_locked"]) as sandbox:
        argv = [sys.executable, "-m", "pytest", "-m", "p1", "--target-file", str(sandbox.paths["targets_file"])]
        argv += ["--target", "live", "--report-dir", str(tmp_path), "-q", "-p", "no:cacheprovider"]
        done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=300)
        incident = json.loads((tmp_path / "latest.json").read_text())
    causes = incident["root_causes"]
    assert [c["id"] for c in causes] == ["health/test_database.py::test_database_is_not_locked"], done.stdout[-3000:]
    cause = causes[0]
    assert cause["severity"] == "p2"  # its own severity, though the run selected P1 only
    holder = re.search(r"pid (\d+) holds the \w+ lock", cause["message"])
    assert holder, cause["message"]
    assert cause["explains"] and all(c.startswith("health/test_database.py::") for c in cause["explains"])
    assert f"root cause: P2 {cause['id']}" in done.stdout
    assert f"pid {holder.group(1)}" in done.stdout


def test_a_selection_that_reports_its_own_causes_runs_nothing_more(tmp_path):
    with Sandbox(layout="runbook") as sandbox:
        argv = [sys.executable, "-m", "pytest", "-m", "p1", "--target-file", str(sandbox.paths["targets_file"])]
        argv += ["--target", "live", "--report-dir", str(tmp_path), "-q", "-p", "no:cacheprovider"]
        done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:]
    assert json.loads((tmp_path / "latest.json").read_text())["root_causes"] == []
    assert "root cause" not in done.stdout
