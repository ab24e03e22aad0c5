"""A pass means the check observed something: against a target where nothing is deployed, no check of the
target passes.

Checks of the target (files, database, logs, processes of its directories, its URLs) must fail or skip with the
reason when their subject is absent; only the checks that observe the host itself (its CPU, memory, disk, its
browser processes, a browser launch) have something to see there.
"""

import json
import subprocess
import sys
import xml.etree.ElementTree as ElementTree
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Checks whose subject is the host, which exists whatever is deployed.
HOST_OBSERVATIONS = {
    "test_headless_browser_launches",
    "test_browser_processes_are_under_maximum",
    "test_system_cpu_is_under_threshold",
    "test_system_memory_is_under_threshold",
    "test_disk_usage_is_under_threshold",
}


def test_nothing_deployed_means_no_check_of_the_target_passes(tmp_path):
    nothing = tmp_path / "nothing"  # never created: every path of the target is missing
    closed = "http://127.0.0.1:9"  # the discard port: nothing listens there
    (tmp_path / "targets.toml").write_text(
        f"""[empty]
api_url = "{closed}"
frontend_url = "{closed}"
workfossa_url = "{closed}"
db_path = "{nothing}/backend/fossawork_v2.db"
backup_dir = "{nothing}/backups"
log_dir = "{nothing}/logs"
credentials_dir = "{nothing}/backend/data/credentials"
frontend_dir = "{nothing}/frontend"
backend_cwd = "{nothing}/backend"
frontend_cwd = "{nothing}/frontend"
backend_unit = ""
frontend_unit = ""
pid_dir = "{nothing}/run"
disk_path = "{tmp_path}"
"""
    )
    junit = tmp_path / "junit.xml"
    argv = [sys.executable, "-m", "pytest", "--target-file", str(tmp_path / "targets.toml"), "--target", "empty"]
    argv += ["--report-dir", str(tmp_path / "reports"), "--junitxml", str(junit), "-q", "-p", "no:cacheprovider"]
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=300)
    cases = ElementTree.parse(junit).getroot().iter("testcase")
    verdicts = {"failure", "error", "skipped"}
    passed = {case.get("name").split("[")[0] for case in cases if not {child.tag for child in case} & verdicts}
    assert done.returncode == 1, done.stdout[-2000:]
    assert passed <= HOST_OBSERVATIONS, f"passed with nothing deployed: {sorted(passed - HOST_OBSERVATIONS)}"


def test_a_service_user_that_is_no_account_fails_the_writability_checks(tmp_path, tree):
    targets = tmp_path / "targets.toml"
    targets.write_text(targets.read_text().replace("[t]\n", '[t]\nservice_user = "no-such-account-4f1c"\n', 1))
    argv = [sys.executable, "-m", "pytest", "--target-file", str(targets), "--target", "t", "-q"]
    argv += ["--report-dir", str(tmp_path / "reports"), "-p", "no:cacheprovider", "-k", "writable"]
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=300)
    failures = json.loads((tmp_path / "reports/latest.json").read_text())["failures"]
    assert sorted(f["id"].split("::")[1] for f in failures) == [
        "test_database_file_is_writable",
        "test_logs_are_writable_by_the_service_user",
    ], done.stdout
    assert all(f["message"].startswith("observed no account 'no-such-account-4f1c' on this host") for f in failures)
