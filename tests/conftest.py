"""Self-tests: pytester for plugin behaviour, the sandbox for real faults."""

import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from remediation_support import make_db

from sandbox import Sandbox

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parent.parent

# Run from / so that the checkout is not on sys.path by way of the working directory: what pytest loads is what
# the install provides.
ENTRY_POINT_PROBE = """
import importlib.metadata
if importlib.metadata.entry_points(group="pytest11", name="fossawork-health"):
    import pytest_fossawork_health
    print(pytest_fossawork_health.CHECKOUT)
"""


@pytest.fixture(scope="session")
def entry_point() -> None:
    """This checkout installed as pytest's ``fossawork-health`` plugin (./setup.sh); skips the test otherwise."""
    probe = subprocess.run([sys.executable, "-c", ENTRY_POINT_PROBE], cwd="/", capture_output=True, text=True)
    if probe.stdout.strip() != str(ROOT):
        found = probe.stdout.strip() or probe.stderr.strip()[-300:] or "no fossawork-health entry point"
        pytest.skip(f"{sys.executable} does not load this checkout's entry point ({found}); run ./setup.sh")


@pytest.fixture(scope="module")
def healthy_sandbox():
    """A live sandbox in the runbook layout with no fault, stopped (by pid, in Sandbox.stop) after the module."""
    box = Sandbox(layout="runbook").start()
    try:
        yield box
    finally:
        box.stop()


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


@pytest.fixture
def tree(tmp_path, healthy_url):
    """A target on disk for the fix scripts: database, logs (one oversized), frontend, credentials, .env.

    Its services start with ``true`` and are healthy when ``healthy_url`` answers; the report dir is outside it.
    """
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
