"""Never touch: a full run of the suite against a live sandbox leaves the target's files as they were.

The snapshot covers what an engineer would hate to see changed by a health check: the database, the stored
credentials, the backend's .env and the frontend source (not node_modules, whose caches the dev server owns,
and not the logs, which the running services append to).
"""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

import pytest
from hostile_servers import assert_ran_cleanly, offline_profile, run_suite, write_targets

from sandbox import Sandbox

SKIPPED_DIRS = {"node_modules", "logs"}


def snapshot(*roots: Path) -> dict[str, tuple]:
    """path -> (kind, size, owner, mtime_ns, sha256) of every file and directory under ``roots``."""
    out: dict[str, tuple] = {}
    for root in roots:
        if not os.path.lexists(root):
            out[str(root)] = ("missing",)
            continue
        paths = [root] if not root.is_dir() else [root, *_walk(root)]
        for path in paths:
            st = path.lstat()
            digest = hashlib.sha256(path.read_bytes()).hexdigest() if stat.S_ISREG(st.st_mode) else ""
            out[str(path)] = (stat.filemode(st.st_mode), st.st_size, st.st_uid, st.st_gid, st.st_mtime_ns, digest)
    return out


def _walk(root: Path):
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIPPED_DIRS)
        for name in sorted(dirnames + filenames):
            yield Path(dirpath, name)


@pytest.fixture(scope="module", params=["runbook", "v2"])
def sandbox(request):
    """A live sandbox (the runbook layout, and v2: WAL, its own service user), stopped by pid after the module."""
    box = Sandbox(layout=request.param).start()
    try:
        yield box
    finally:
        box.stop()


def test_a_full_run_against_a_live_sandbox_changes_nothing(sandbox, tmp_path):
    paths = sandbox.paths
    # The database's whole directory (a journal, WAL or shm file appearing is a write, so is a new mtime),
    # the credentials, the .env file and the frontend source, with the default profile: no login.
    watched = [paths["db"].parent, paths["env_file"], paths["frontend_dir"]]
    watched += [paths["credentials_dir"]] if sandbox.layout == "runbook" else []
    before = snapshot(*watched)
    assert sum(1 for k in before if k.startswith(str(paths["frontend_dir"]))) > 3, "the frontend source is not watched"
    targets = sandbox.write_targets(tmp_path / "targets.toml")
    run = run_suite(targets, "live", timeout=240)
    after = snapshot(*watched)
    if sandbox.layout == "v2":
        # The v2 app opens and closes its WAL database for every request it serves (the suite's GETs too), which
        # creates and removes its -wal/-shm and so moves the directory's mtime: the application's own writes.
        # Every entry is still compared; the suite's own reads are proven trace-free in test_read_only_journal.py.
        for snap in (before, after):
            snap[str(paths["db"].parent)] = snap[str(paths["db"].parent)][:-2]
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    assert not changed, f"the run changed {changed[:10]}"
    assert "Traceback" not in run.output and "INTERNALERROR" not in run.output, run.output[-3000:]
    assert run.returncode in (0, 1), run.output[-3000:]
    assert len(run.cases) > 40, run.output[-3000:]  # the whole suite ran, not a collection error


def test_a_run_never_creates_a_missing_database(tmp_path):
    missing = tmp_path / "backend" / "fossawork_v2.db"
    targets = write_targets(tmp_path / "t.toml", "t", offline_profile(tmp_path, db_path=str(missing)))
    run = run_suite(targets, "t", "-m", "database or auth")
    assert_ran_cleanly(run)
    assert not missing.exists() and not missing.parent.exists()
