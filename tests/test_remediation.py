"""Fix scripts: dry-run changes nothing, backups are verified, nothing is deleted, one remediation at a time."""

import gzip
import hashlib
import io
import os
import sqlite3
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from observe import profile as profiles
from observe.db import integrity, row_checksums
from remediation import cli
from remediation.actions import core
from remediation.actions.database import backup_database
from remediation.scripts import module_name, scripts

ROOT = Path(__file__).resolve().parent.parent

ALL_FIXES = [(s, t) for s, types in scripts().items() for t in types]


class _Ok(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"<html>ok</html>")

    do_HEAD = do_GET

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def healthy_url():
    """A local server answering 200 to everything: the 'service' start commands wait for."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Ok)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


def make_db(path: Path, rows: int = 300) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT)")
        conn.execute("CREATE TABLE work_orders (id INTEGER PRIMARY KEY, site TEXT, notes TEXT)")
        conn.execute("CREATE TABLE dispensers (id INTEGER PRIMARY KEY, work_order_id INTEGER, serial TEXT)")
        conn.execute("CREATE INDEX wo_site ON work_orders(site)")
        conn.executemany("INSERT INTO users VALUES (?, ?)", [(i, f"u{i}@x") for i in range(20)])
        conn.executemany("INSERT INTO work_orders VALUES (?, ?, ?)", [(i, f"site {i}", "n" * 300) for i in range(rows)])
        conn.executemany("INSERT INTO dispensers VALUES (?, ?, ?)", [(i, i, f"SN{i}") for i in range(rows)])
        conn.execute("CREATE TABLE bloat (b BLOB)")
        conn.executemany("INSERT INTO bloat VALUES (?)", [(os.urandom(4000),) for _ in range(100)])
    with sqlite3.connect(path) as conn:
        conn.execute("DROP TABLE bloat")  # leaves free pages for VACUUM to reclaim
    os.chmod(path, 0o644)


@pytest.fixture
def tree(tmp_path, healthy_url):
    """A target on disk: database, logs (one oversized), frontend, credentials, .env; report dir outside it."""
    root = tmp_path / "target"
    for d in ("backend/data/credentials", "logs/backend", "frontend", "backups", "run"):
        (root / d).mkdir(parents=True)
    make_db(root / "backend" / "fossawork_v2.db")
    (root / "logs/backend/backend-errors-latest.jsonl").write_bytes(b'{"level": "ERROR", "message": "x"}\n' * 200)
    (root / "logs/backend/small.jsonl").write_text("{}\n")
    (root / "frontend/package.json").write_text('{"name": "f", "version": "1.0.0"}\n')
    (root / "backend/.env").write_text("SECRET_KEY=s3cr3t-value-for-tests-0123456789\n")
    os.chmod(root / "backend/.env", 0o644)
    (root / "backend/data/credentials/user.json").write_text('{"user": "x"}')
    os.chmod(root / "backend/data/credentials", 0o755)
    os.chmod(root / "backend/data/credentials/user.json", 0o644)
    toml = f"""[t]
api_url = "{healthy_url}"
frontend_url = "{healthy_url}/"
workfossa_url = "http://127.0.0.1:9/"
db_path = "{root}/backend/fossawork_v2.db"
backup_dir = "{root}/backups"
log_dir = "{root}/logs"
credentials_dir = "{root}/backend/data/credentials"
frontend_dir = "{root}/frontend"
env_file = "{root}/backend/.env"
backend_unit = ""
frontend_unit = ""
pid_dir = "{root}/run"
backend_start = "true"
frontend_start = "true"
browser_executable = "true"
disk_path = "{root}"
[t.thresholds]
log_max_bytes = 4096
[t.timeouts]
connect = 0.5
"""
    (tmp_path / "targets.toml").write_text(toml)
    return root


def run_script(tmp_path, script, issue_type, *extra):
    """Run a fix script in-process; (exit code, printed output)."""
    out = io.StringIO()
    argv = [
        *([issue_type] if issue_type else []),
        "--target-file",
        str(tmp_path / "targets.toml"),
        "--target",
        "t",
        "--report-dir",
        str(tmp_path / "reports"),
        *extra,
    ]
    import contextlib

    with contextlib.redirect_stdout(out):
        code = cli.main(module_name(script), argv)
    return code, out.getvalue()


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
    assert code in (core.EXIT_OK, core.EXIT_FAILED), output
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
    assert code == core.EXIT_FAILED
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
    assert "'users': {'before': 20, 'after': 20, 'lost': 0}" in output


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


def test_secrets_from_the_env_file_never_reach_output_or_audit(tmp_path, tree):
    code, output = run_script(tmp_path, "fix-automation-issues", "credential_issues", "--execute")
    assert code == 0, output
    for text in (output, (tmp_path / "reports" / core.AUDIT_LOG).read_text()):
        assert "s3cr3t-value-for-tests-0123456789" not in text
