"""The sandbox's command line says what it did, and its faults leave nothing behind in /tmp."""

import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def sandbox(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "sandbox", *args], cwd=ROOT, capture_output=True, text=True, timeout=180
    )


def chromium_scratch() -> set[str]:
    return {p.name for p in Path(tempfile.gettempdir()).glob("org.chromium.Chromium.*")}


def test_fault_add_clear_and_down_each_say_what_they_did_and_zombies_leave_no_scratch_in_tmp():
    up = sandbox("up", "--json")
    assert up.returncode == 0, up.stderr
    root = json.loads(up.stdout)["root"]
    try:
        before = chromium_scratch()
        added = sandbox("fault", "add", "browser_zombies", "--dir", root)
        assert added.returncode == 0 and added.stdout.startswith(f"injected browser_zombies into the sandbox in {root}")
        cleared = sandbox("fault", "clear", "browser_zombies", "--dir", root)
        assert cleared.returncode == 0 and cleared.stdout.strip() == f"cleared browser_zombies in the sandbox in {root}"
        assert chromium_scratch() - before == set()
    finally:
        down = sandbox("down", "--dir", root)
    assert down.returncode == 0 and down.stdout.strip() == f"stopped the sandbox in {root}"


def test_the_browser_probe_leaves_no_chromium_scratch_behind(tmp_path, monkeypatch):
    from observe.browser import launch

    monkeypatch.setenv("TMPDIR", str(tmp_path))  # where Chromium would leave org.chromium.Chromium.* otherwise
    assert launch("/usr/bin/chromium", 30).ok
    assert list(tmp_path.iterdir()) == []
