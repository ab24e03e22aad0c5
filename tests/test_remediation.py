"""Fix scripts: dry-run changes nothing, backups are verified, nothing is deleted, one remediation at a time."""

import gzip
import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from remediation_support import run_script

from observe import profile as profiles
from observe.db import integrity, row_checksums
from remediation.actions import core
from remediation.actions.database import backup_database
from remediation.actions.services import end_processes
from remediation.scripts import module_name, scripts

ROOT = Path(__file__).resolve().parent.parent

ALL_FIXES = [(s, t) for s, types in scripts().items() for t in types]


def snapshot(root: Path) -> dict:
    """Every path under root with its mode and content hash."""
    out = {}
    for path in sorted(root.rglob("*")):
        st = path.lstat()
        digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else ""
        out[str(path.relative_to(root))] = (st.st_mode, digest)
    return out


def profile_of(tmp_path):
    return profiles.resolve(tmp_path / "targets.toml", "t")


@pytest.mark.parametrize("script", sorted(scripts()))
def test_every_script_runs_as_a_module_offering_exactly_its_registered_issue_types(script):
    done = subprocess.run(
        [sys.executable, "-m", module_name(script), "--help"], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    types = [t for t in scripts()[script] if t]
    offered = done.stdout.split("{", 1)[1].split("}", 1)[0].split(",") if types else []
    assert offered == types, done.stdout


@pytest.mark.parametrize("script,issue_type", ALL_FIXES, ids=[f"{s}/{t}" if t else s for s, t in ALL_FIXES])
def test_dry_run_changes_nothing_on_disk(tmp_path, tree, script, issue_type):
    before = snapshot(tree)
    code, output = run_script(tmp_path, script, issue_type)
    assert snapshot(tree) == before
    assert "dry-run" in output
    assert code in (core.EXIT_OK, core.EXIT_FAILED, core.EXIT_REFUSED), output
    audit = (tmp_path / "reports" / core.AUDIT_LOG).read_text()
    assert '"dry_run": true' in audit and '"dry_run": false' not in audit


def test_the_backup_is_made_online_and_verified(tmp_path, tree):
    r = core.Remediation(profile_of(tmp_path), "fix-database-issues", "vacuum", True, tmp_path / "reports")
    backup = backup_database(r)
    assert backup.parent == tree / "backups"
    assert integrity(backup) == ["ok"]
    assert row_checksums(backup) == row_checksums(tree / "backend/fossawork_v2.db")
    assert backup.stat().st_mode & 0o777 == 0o600


def test_vacuum_keeps_every_row_and_shrinks_the_file(tmp_path, tree):
    db = tree / "backend/fossawork_v2.db"
    rows, size = row_checksums(db), db.stat().st_size
    code, output = run_script(tmp_path, "fix-database-issues", "vacuum", "--execute")
    assert code == 0, output
    assert row_checksums(db) == rows
    assert db.stat().st_size < size
    assert len(list((tree / "backups").glob("fossawork_v2-*.db"))) == 1


def corrupt(db: Path) -> bytes:
    """Garbage over the pages after the schema (header intact): integrity_check fails."""
    data = bytearray(db.read_bytes())
    data[4096 * 3 : 4096 * 6] = b"\xde\xad\xbe\xef" * 3072
    db.write_bytes(bytes(data))
    return bytes(data)


def test_vacuum_refuses_a_corrupt_database_and_touches_nothing(tmp_path, tree):
    corrupt(tree / "backend/fossawork_v2.db")
    before = snapshot(tree)
    code, output = run_script(tmp_path, "fix-database-issues", "vacuum", "--execute")
    assert code == core.EXIT_REFUSED
    assert "run recover-corrupted-database instead of VACUUM" in output
    assert snapshot(tree) == before


def test_corruption_recovery_quarantines_the_original_and_reports_rows(tmp_path, tree):
    db = tree / "backend/fossawork_v2.db"
    damaged = corrupt(db)
    code, output = run_script(tmp_path, "recover-corrupted-database", "recover", "--execute")
    assert code == 0, output
    quarantined = list((tree / "backups" / "quarantine").glob("*/fossawork_v2.db"))
    assert len(quarantined) == 1 and quarantined[0].read_bytes() == damaged  # the evidence, byte for byte
    assert integrity(db) == ["ok"]
    assert "rows per table before -> after" in output
    assert "'users': {'before': 20, 'after': 20, 'orphans': 0, 'lost': 0}" in output


def test_log_rotation_compresses_and_keeps_every_byte(tmp_path, tree):
    log = tree / "logs/backend/backend-errors-latest.jsonl"
    original = log.read_bytes()
    code, output = run_script(tmp_path, "resolve-performance-issues", "disk_io", "--execute")
    assert code == 0, output
    archives = list(log.parent.glob("backend-errors-latest.jsonl.*.gz"))
    assert len(archives) == 1
    assert gzip.decompress(archives[0].read_bytes()) == original
    assert log.exists() and log.stat().st_size == 0  # a fresh log in place, never truncated in place
    assert (tree / "logs/backend/small.jsonl").read_text() == "{}\n"


def test_permissions_are_made_private(tmp_path, tree):
    code, output = run_script(tmp_path, "fix-database-issues", "permissions", "--execute")
    assert code == 0, output
    for rel, mode in [
        ("backend/fossawork_v2.db", 0o600),
        ("backend/.env", 0o600),
        ("backend/data/credentials", 0o700),
        ("backend/data/credentials/user.json", 0o600),
    ]:
        assert (tree / rel).stat().st_mode & 0o777 == mode, rel


def test_a_second_remediation_acts_on_nothing(tmp_path, tree):
    before = snapshot(tree)
    with core.RemediationLock(profile_of(tmp_path)):
        code, output = run_script(tmp_path, "fix-database-issues", "vacuum", "--execute")
    assert code == core.EXIT_BUSY
    assert f"remediation in progress (pid {os.getpid()}, lock on " in output
    assert snapshot(tree) == before


def test_the_service_is_stopped_by_its_pid_file_only(tmp_path, tree):
    import subprocess

    proc = subprocess.Popen(["sleep", "30"])
    (tree / "run/backend.pid").write_text(f"{proc.pid}\n")
    # Not a backend (no 'uvicorn' in its command line): pid reuse protection leaves it alone.
    code, output = run_script(tmp_path, "fix-backend-issues", "api_errors", "--execute")
    assert code == 0, output
    assert proc.poll() is None and "not running" in output
    proc.kill()
    proc.wait()


def test_a_stopped_service_its_parent_has_not_reaped_yet_is_ended_at_once(tmp_path):
    # A parent that never reaps (as the sandbox's test process, or a slow supervisor): the service exits on SIGTERM
    # and stays a zombie. It has ended; waiting out the grace and sending SIGKILL would cost 2 x 10 s and misreport.
    parent = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import subprocess, time; print(subprocess.Popen(['sleep', '60']).pid, flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        service = psutil.Process(int(parent.stdout.readline()))
        started = time.monotonic()
        assert end_processes([service], grace=10.0) == f"ended pids {service.pid}"
        assert time.monotonic() - started < 5.0
        assert service.status() == psutil.STATUS_ZOMBIE  # still unreaped: only its parent can reap it
    finally:
        parent.kill()
        parent.wait()


def test_secrets_from_the_env_file_never_reach_output_or_audit(tmp_path, tree):
    code, output = run_script(tmp_path, "fix-automation-issues", "credential_issues", "--execute")
    assert code == 0, output
    for text in (output, (tmp_path / "reports" / core.AUDIT_LOG).read_text()):
        assert "s3cr3t-value-for-tests-0123456789" not in text


def test_a_full_audit_log_moves_aside_and_the_next_entries_start_a_new_one(tmp_path, tree, monkeypatch):
    monkeypatch.setattr(core, "AUDIT_MAX_BYTES", 64 * 1024)  # a dry run's entries (a few KiB) fit in a new log
    log = tmp_path / "reports" / core.AUDIT_LOG
    log.parent.mkdir()
    old = '{"run_id": "earlier", "action": "x"}\n' * 2000  # past the limit
    log.write_text(old)
    os.chmod(log, 0o600)
    run_script(tmp_path, "fix-database-issues", "vacuum")
    assert (tmp_path / "reports" / f"{core.AUDIT_LOG}.1").read_text() == old  # moved, not truncated
    entries = log.read_text().splitlines()
    assert entries and all('"dry_run": true' in line for line in entries)
    assert log.stat().st_mode & 0o777 == 0o600
