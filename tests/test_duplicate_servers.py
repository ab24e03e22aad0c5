"""Duplicate frontend servers are servers of this frontend, not command lines that mention ``vite``."""

import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

from sandbox import Sandbox

ROOT = Path(__file__).resolve().parent.parent
CHECK = "health/test_frontend.py::test_frontend_dev_server_is_not_duplicated"


def run_check(sandbox: Sandbox) -> subprocess.CompletedProcess:
    argv = [sys.executable, "-m", "pytest", CHECK, "--target-file", str(sandbox.paths["targets_file"])]
    argv += ["--target", "live", "--no-incident-report", "-q", "-p", "no:cacheprovider"]
    return subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=120)


def listens(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_a_vite_build_and_another_projects_vite_are_not_a_second_dev_server(tmp_path):
    with Sandbox(layout="runbook") as sandbox:
        frontend = sandbox.paths["frontend_dir"]
        vite = [shutil.which("node") or "node", str(frontend / "node_modules/vite/bin/vite.js")]
        other = tmp_path / "other-project"
        shutil.copytree(frontend, other, symlinks=True, ignore=shutil.ignore_patterns("node_modules"))
        (other / "node_modules").symlink_to(frontend / "node_modules")
        port = sandbox.free_port()
        procs = [
            # A build that stays up (watch mode) in this frontend's directory: no listening socket.
            subprocess.Popen([*vite, "build", "--watch", "--outDir", str(tmp_path / "dist")], cwd=frontend),
            # Another project's dev server on the same host.
            subprocess.Popen([*vite, "--port", str(port), "--strictPort"], cwd=other),
        ]
        try:
            # Both are up: the build has written its first output and watches, the other server listens.
            deadline = time.monotonic() + 30
            while not ((tmp_path / "dist" / "index.html").exists() and listens(port)):
                assert all(p.poll() is None for p in procs) and time.monotonic() < deadline
                time.sleep(0.1)
            assert all(p.poll() is None for p in procs)
            done = run_check(sandbox)
        finally:
            for p in procs:
                p.kill()
                p.wait()
    assert done.returncode == 0, done.stdout[-2000:]
