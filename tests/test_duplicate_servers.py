"""Duplicate frontend servers are servers of this frontend, not command lines that mention ``vite``."""

import shutil
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


def test_a_vite_build_and_another_projects_vite_are_not_a_second_dev_server(tmp_path):
    with Sandbox(layout="runbook") as sandbox:
        frontend = sandbox.paths["frontend_dir"]
        vite = [shutil.which("node") or "node", str(frontend / "node_modules/vite/bin/vite.js")]
        other = tmp_path / "other-project"
        shutil.copytree(frontend, other, symlinks=True, ignore=shutil.ignore_patterns("node_modules"))
        (other / "node_modules").symlink_to(frontend / "node_modules")
        procs = [
            # A build that stays up (watch mode) in this frontend's directory: no listening socket.
            subprocess.Popen([*vite, "build", "--watch", "--outDir", str(tmp_path / "dist")], cwd=frontend),
            # Another project's dev server on the same host.
            subprocess.Popen([*vite, "--port", str(sandbox.free_port()), "--strictPort"], cwd=other),
        ]
        try:
            time.sleep(3)  # both are up (the build has started watching, the other server listens)
            assert all(p.poll() is None for p in procs)
            done = run_check(sandbox)
        finally:
            for p in procs:
                p.kill()
                p.wait()
    assert done.returncode == 0, done.stdout[-2000:]
