"""Remediation against the real sandbox: each fault injected, fixed by its script, and the data intact."""

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from observe import profile as profiles
from observe.db import integrity, row_checksums
from observe.logs import Logs
from observe.services import orphaned_browsers
from remediation.scripts import module_name

ROOT = Path(__file__).resolve().parent.parent
sandbox = pytest.importorskip("sandbox")


@pytest.fixture
def live(tmp_path):
    """Start a sandbox with the test's fault; yield (sandbox, targets file, resolved profile, report dir)."""

    def start(*faults, layout="runbook"):
        sb = sandbox.Sandbox(layout=layout, faults=list(faults)).start()
        started.append(sb)
        path = sb.write_targets(tmp_path / "live.toml")
        return sb, path, profiles.resolve(path, "live"), tmp_path / "reports"

    started = []
    yield start
    for sb in started:
        sb.stop()


def fix(path, report_dir, script, issue_type, timeout=300):
    argv = [
        sys.executable,
        "-m",
        module_name(script),
        issue_type,
        "--target-file",
        str(path),
        "--target",
        "live",
        "--execute",
        "--report-dir",
        str(report_dir),
    ]
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    return done.returncode, done.stdout + done.stderr


def test_backend_down_is_restarted_and_rechecked_fixed(live):
    sb, path, profile, reports = live("backend_down")
    argv = [
        sys.executable,
        "-m",
        "pytest",
        "health/test_backend.py",
        "-k",
        "process_is_running or health",
        "--target-file",
        str(path),
        "--target",
        "live",
        "--remediate",
        "--report-dir",
        str(reports),
        "-p",
        "no:cacheprovider",
        "-q",
    ]
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=300)
    incident = json.loads((reports / "latest.json").read_text())
    assert incident["severity"] == "p1", done.stdout
    assert incident["failures"], done.stdout
    assert {f["remediation"]["outcome"] for f in incident["failures"]} == {"fixed"}, done.stdout
    # Only "fixed" counts as fixed, and then the run's verdict says so: exit 0, nothing left open.
    assert done.returncode == 0, done.stdout
    assert incident["remediation"]["severity_after"] == "healthy"
    assert incident["remediation"]["fixes"][0]["fix"] == "fix-backend-issues/api_errors"
    assert any(e["action"].startswith("start the backend") for e in incident["audit"])


def test_a_backend_that_dies_at_import_is_escalated_never_restarted(live):
    # v2 as deployed: the restarted backend dies at import (the traceback only in its journal). A restart would
    # die the same way: --remediate runs no fix, says why, and leaves the backend as it found it.
    sb, path, profile, reports = live("import_error", layout="v2")
    journal = Path(sb.paths["backend_journal"])
    crashes = journal.read_text().count("ModuleNotFoundError")
    argv = [sys.executable, "-m", "pytest", "-m", "p1", "--target-file", str(path), "--target", "live"]
    argv += ["--remediate", "--report-dir", str(reports), "-p", "no:cacheprovider", "-q"]
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=300)
    incident = json.loads((reports / "latest.json").read_text())
    cause = "health/test_backend.py::test_backend_logs_show_no_import_errors"
    assert [c["id"] for c in incident["root_causes"]] == [cause], done.stdout
    assert incident["remediation"]["fixes"] == [] and incident["audit"] == [], done.stdout
    for failure in incident["failures"]:
        assert failure["remediation"]["outcome"] == "not attempted", failure
        if failure["id"] != cause:
            reason = failure["remediation"]["reason"]
            assert cause in reason and "(fix-backend-issues/api_errors) cannot help" in reason, reason
    assert incident["remediation"]["severity_after"] == "p1" and done.returncode == 1, done.stdout
    assert "remediation: not attempted (escalated: its cause, reported by" in done.stdout
    assert journal.read_text().count("ModuleNotFoundError") == crashes  # never started again
    assert not [p for p in psutil.process_iter(["cwd"]) if p.info["cwd"] == str(profile.backend_cwd)]


def test_an_api_answering_500_is_restarted_and_rechecked_fixed(live):
    sb, path, profile, reports = live("api_500")
    before = row_checksums(Path(profile.db_path))
    argv = [
        sys.executable,
        "-m",
        "pytest",
        "health/test_backend.py",
        "-k",
        "answers_200",
        "--target-file",
        str(path),
        "--target",
        "live",
        "--remediate",
        "--report-dir",
        str(reports),
        "-p",
        "no:cacheprovider",
        "-q",
    ]
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=300)
    incident = json.loads((reports / "latest.json").read_text())
    assert [f["id"].split("::")[-1] for f in incident["failures"]] == [
        "test_api_endpoint_answers_200_with_json[dispensers]"
    ], done.stdout
    assert incident["failures"][0]["remediation"]["outcome"] == "fixed", done.stdout
    assert incident["remediation"]["fixes"][0]["fix"] == "fix-backend-issues/api_errors"
    assert row_checksums(Path(profile.db_path)) == before


def test_a_bloated_database_is_vacuumed_with_every_row_kept(live):
    sb, path, profile, reports = live("db_bloated")
    db = Path(profile.db_path)
    rows, size = row_checksums(db), db.stat().st_size
    code, output = fix(path, reports, "fix-database-issues", "vacuum")
    assert code == 0, output
    assert row_checksums(db) == rows
    assert db.stat().st_size < size
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        assert conn.execute("PRAGMA freelist_count").fetchone()[0] == 0


def test_a_corrupted_database_is_recovered_and_the_original_quarantined(live):
    sb, path, profile, reports = live("db_corrupt")
    db = Path(profile.db_path)
    damaged = db.read_bytes()
    code, output = fix(path, reports, "recover-corrupted-database", "recover")
    assert code == 0, output
    assert integrity(db) == ["ok"]
    quarantined = list((Path(profile.backup_dir) / "quarantine").glob(f"*/{db.name}"))
    assert [q.read_bytes() == damaged for q in quarantined] == [True]
    assert "rows per table before -> after" in output


def test_oversized_logs_are_rotated_and_compressed(live):
    sb, path, profile, reports = live("log_oversized")
    big = [path for path, _ in Logs(profile).oversized(profile.thresholds.log_max_bytes)]
    assert big
    sizes = {p: p.stat().st_size for p in big}
    code, output = fix(path, reports, "resolve-performance-issues", "disk_io")
    assert code == 0, output
    assert Logs(profile).oversized(profile.thresholds.log_max_bytes) == []
    for log, size in sizes.items():
        archive = next(log.parent.glob(log.name + ".*.gz"))
        import gzip

        with gzip.open(archive) as f:
            assert sum(len(chunk) for chunk in iter(lambda: f.read(1 << 20), b"")) == size


def test_zombie_browsers_are_ended_by_pid(live):
    sb, path, profile, reports = live("browser_zombies")
    orphans = [p.pid for p in orphaned_browsers(profile)]
    assert len(orphans) >= 6
    code, output = fix(path, reports, "fix-automation-issues", "browser_issues")
    assert f"end orphaned browsers by pid: {', '.join(map(str, orphans))}" in output
    assert not [pid for pid in orphans if psutil.pid_exists(pid) and psutil.Process(pid).status() != "zombie"]


def test_missing_node_modules_are_reinstalled_from_the_lockfile(live):
    sb, path, profile, reports = live("node_modules_missing")
    frontend = Path(profile.frontend_dir)
    assert not (frontend / "node_modules").exists()
    code, output = fix(path, reports, "fix-frontend-issues", "server_not_running", timeout=900)
    assert code == 0, output
    assert (frontend / "node_modules" / "vite").is_dir()
    assert "npm ci" in output
