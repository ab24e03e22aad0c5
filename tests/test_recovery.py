"""A fix is judged by its outcome: real damage, real crashes, real full disks, real writers, real symlinks.

The fix scripts run against a target on disk (``tree`` in conftest.py) or a live sandbox; the database
damage is one 4 KiB leaf page overwritten with random bytes, the way a torn write or a bad sector does it.
"""

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path

import pytest
from remediation_support import run_script

from observe.db import integrity
from remediation.actions.core import EXIT_OK, EXIT_REFUSED, KILL_AFTER_STEP_ENV
from sandbox import Sandbox

ROOT = Path(__file__).resolve().parent.parent


def varint(data: bytes, at: int) -> tuple[int, int]:
    """SQLite's big-endian varint at ``at``: (value, next offset)."""
    value = 0
    for i in range(9):
        byte = data[at + i]
        if i == 8:
            return (value << 8) | byte, at + 9
        value = (value << 7) | (byte & 0x7F)
        if byte < 0x80:
            return value, at + i + 1
    raise AssertionError("unreachable")


def leaf_rowids(db: Path, pageno: int) -> set[int]:
    """The rowids stored on one table-leaf page, read from the file format itself (before it is damaged)."""
    with closing(sqlite3.connect(db)) as conn:
        size = conn.execute("PRAGMA page_size").fetchone()[0]
    page = db.read_bytes()[(pageno - 1) * size : pageno * size]
    assert page[0] == 0x0D, "not a table leaf page"
    cells = int.from_bytes(page[3:5], "big")
    rowids = set()
    for i in range(cells):
        offset = int.from_bytes(page[8 + 2 * i : 10 + 2 * i], "big")
        _, offset = varint(page, offset)  # payload size
        rowid, _ = varint(page, offset)
        rowids.add(rowid)
    return rowids


def damage_a_leaf(db: Path, table: str, seed: int = 7) -> set[int]:
    """Overwrite one leaf page of ``table`` in the middle of the file with random bytes; the rowids it held."""
    with closing(sqlite3.connect(db)) as conn:
        size = conn.execute("PRAGMA page_size").fetchone()[0]
        leaves = [
            r[0] for r in conn.execute("SELECT pageno FROM dbstat WHERE name = ? AND pagetype = 'leaf'", (table,))
        ]
    victim = sorted(leaves)[len(leaves) // 2]
    lost = leaf_rowids(db, victim)
    with open(db, "r+b") as f:
        f.seek((victim - 1) * size)
        f.write(random.Random(seed).randbytes(size))
    return lost


def remediate(sandbox: Sandbox, checks: str, reports: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    """``pytest CHECKS --remediate`` against the live sandbox, its reports in ``reports``."""
    argv = [sys.executable, "-m", "pytest", checks, "--target-file", str(sandbox.paths["targets_file"])]
    argv += ["--target", "live", "--remediate", "--report-dir", str(reports), "-q", "-p", "no:cacheprovider"]
    return subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def rows(db: Path, table: str) -> dict[int, tuple]:
    with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        return {row[0]: row for row in conn.execute(f'SELECT rowid, * FROM "{table}"')}


@pytest.mark.parametrize("layout", ["runbook", "v2"])
def test_random_page_damage_keeps_every_readable_row_and_reports_the_loss_exactly(tmp_path, layout):
    with Sandbox(layout=layout) as sandbox:
        db = sandbox.paths["db"]
        owner = (db.stat().st_uid, db.stat().st_gid, db.stat().st_mode & 0o7777)
        before = rows(db, "work_orders")
        lost = damage_a_leaf(db, "work_orders")
        assert lost and lost < set(before)
        reports = tmp_path / "reports"
        done = remediate(sandbox, "health/test_database.py", reports)
        incident = json.loads((reports / "latest.json").read_text())
        outcomes = {f["id"].split("::")[1]: f["remediation"]["outcome"] for f in incident["failures"]}
        assert outcomes["test_database_passes_quick_check"] == "fixed with loss", done.stdout[-3000:]
        # The lost work orders leave dispensers pointing at nothing: reported, and left to a human.
        assert outcomes.get("test_database_foreign_keys_are_consistent", "not attempted") == "not attempted"
        after = rows(db, "work_orders")
        assert set(after) == set(before) - lost  # every row on a readable page, and only the damaged ones gone
        assert all(after[rowid] == before[rowid] for rowid in after)
        loss = next(f["remediation"]["loss"] for f in incident["failures"] if f["remediation"]["loss"])
        assert loss["work_orders"]["lost"] == len(lost), loss
        assert loss["work_orders"]["before"] == len(before)
        assert done.returncode == 1  # a loss is not "fixed": the run still fails
        assert f"work_orders: {len(lost)} of {len(before)} rows lost" in done.stdout
        # v2's backend runs as its own user: the recovered file is still its own, and it can write it.
        assert (db.stat().st_uid, db.stat().st_gid, db.stat().st_mode & 0o7777) == owner


STEPS = range(1, 7)


@pytest.mark.parametrize("step", STEPS, ids=[f"killed-after-step-{n}" for n in STEPS])
def test_a_recovery_killed_at_any_step_resumes_without_losing_a_row(tmp_path, tree, step):
    db = tree / "backend/fossawork_v2.db"
    before = rows(db, "work_orders")
    lost = damage_a_leaf(db, "work_orders")
    argv = [sys.executable, "-m", "remediation.scripts.recover_corrupted_database", "recover"]
    argv += ["--target-file", str(tmp_path / "targets.toml"), "--target", "t", "--execute"]
    argv += ["--report-dir", str(tmp_path / "reports")]
    killed = subprocess.run(
        argv, cwd=ROOT, env={**os.environ, KILL_AFTER_STEP_ENV: str(step)}, capture_output=True, text=True, timeout=120
    )
    assert killed.returncode == -signal.SIGKILL, killed.stdout
    rerun = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert rerun.returncode == EXIT_OK, rerun.stdout + rerun.stderr
    assert integrity(db) == ["ok"]
    after = rows(db, "work_orders")
    assert set(after) == set(before) - lost, rerun.stdout
    quarantined = list((tree / "backups/quarantine").glob("*/fossawork_v2.db"))
    assert len(quarantined) == 1  # the one original, never a second "original" taken from the half-done state


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small tmpfs as the full backup disk needs root")
def test_a_full_backup_disk_mid_fix_leaves_the_original_intact_and_openable(tmp_path, tree):
    db = tree / "backend/fossawork_v2.db"
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("CREATE TABLE later (x)")  # left in the -wal: the database is main file + WAL together
        conn.execute("INSERT INTO later VALUES (1)")
        hold = sqlite3.connect(db)  # keeps the -wal from being checkpointed away when the writer closes
        hold.execute("SELECT 1 FROM later").fetchall()
    damage_a_leaf(db, "work_orders")
    hold.close()
    files = {p.name: p.read_bytes() for p in db.parent.iterdir() if p.name.startswith(db.name)}
    assert f"{db.name}-wal" in files
    backups = tree / "backups"
    size = max(len(b) for b in files.values()) // 2  # room for less than the main file: the copy hits ENOSPC
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(backups)], check=True)
    try:
        code, output = run_script(tmp_path, "recover-corrupted-database", "recover", "--execute")
        assert code != EXIT_OK, output
        assert "No space left on device" in output
        assert {p.name: p.read_bytes() for p in db.parent.iterdir() if p.name.startswith(db.name)} == files
        with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
            assert conn.execute("SELECT x FROM later").fetchall() == [(1,)]  # main file and WAL still together
        # Nothing half-copied is left behind; the journal says where a rerun starts again.
        assert [p for p in backups.rglob("*") if p.is_file()] in ([], [backups / "recovery" / "journal.json"])
    finally:
        subprocess.run(["umount", str(backups)], check=True)


def test_a_writer_not_named_by_the_pid_file_makes_the_fix_refuse(tmp_path, tree):
    db = tree / "backend/fossawork_v2.db"
    damage_a_leaf(db, "work_orders")
    before = db.read_bytes()
    writer = subprocess.Popen(
        [sys.executable, "-c", f"import sqlite3, time; c = sqlite3.connect({str(db)!r}); time.sleep(60)"]
    )
    try:
        time.sleep(0.5)  # the writer has the file open
        code, output = run_script(tmp_path, "recover-corrupted-database", "recover", "--execute")
    finally:
        writer.kill()
        writer.wait()
    assert code == EXIT_REFUSED, output
    assert f"pid {writer.pid}" in output
    assert db.read_bytes() == before
    assert not (tree / "backups/quarantine").exists()


def test_a_symlink_out_of_the_target_is_refused_and_the_outside_file_unchanged(tmp_path, tree):
    outside = tmp_path / "elsewhere.json"
    outside.write_text("{}")
    os.chmod(outside, 0o644)
    (tree / "backend/data/credentials/link.json").symlink_to(outside)
    code, output = run_script(tmp_path, "fix-automation-issues", "credential_issues", "--execute")
    assert code == EXIT_REFUSED, output
    assert "symlinks are not followed out of the target" in output
    assert outside.stat().st_mode & 0o777 == 0o644
    assert (tree / "backend/data/credentials/user.json").stat().st_mode & 0o777 == 0o644  # nothing half-done


@pytest.mark.parametrize("layout", ["runbook", "v2"])
def test_a_restart_keeps_the_log_lines_from_before_it_in_the_incidents_folder(tmp_path, layout):
    # v2 truncates its logs when it starts: after the restart, the evidence folder is the only copy.
    with Sandbox(layout=layout, faults=["api_500"]) as sandbox:
        logs = Path(sandbox.paths["log_dir"])
        before = {p.relative_to(logs): p.read_bytes() for p in logs.rglob("*.jsonl")}
        reports = tmp_path / "reports"
        done = remediate(sandbox, "health/test_backend.py", reports)
        incident = json.loads((reports / "latest.json").read_text())
        assert incident["evidence"], done.stdout[-3000:]
        evidence = Path(incident["evidence"])
        # <incident>.evidence/before-<fix>/<path under log_dir>: the end of each log as it was before the restart
        kept = {Path(*p.relative_to(evidence).parts[1:]): p.read_bytes() for p in evidence.rglob("*.jsonl")}
        assert any(kept.values()) and set(kept) <= set(before), (sorted(kept), sorted(before))
        for name, data in kept.items():
            assert before[name] in data, name  # what was there before the checks ran, and their own errors after
        assert f"evidence kept before the fixes: {incident['evidence']}" in done.stdout


def test_a_fix_that_breaks_a_passing_check_is_reported_as_made_worse(tmp_path):
    with Sandbox(layout="runbook", faults=["api_500"]) as sandbox:
        reports = tmp_path / "reports"
        # The profile's start command is wrong: the restart stops a half-working backend and cannot start it.
        env = {**os.environ, "FOSSAWORK_BACKEND_START": "false"}
        done = remediate(sandbox, "health/test_backend.py", reports, env=env)
        incident = json.loads((reports / "latest.json").read_text())
        assert {f["remediation"]["outcome"] for f in incident["failures"]} == {"made worse"}, done.stdout[-3000:]
        assert "test_api_endpoint_answers_200_with_json[health]" in " ".join(incident["remediation"]["made_worse"])
        assert done.returncode == 1
        assert "remediation: made worse" in done.stdout


@pytest.fixture(scope="module")
def v2():
    """A live v2 sandbox (WAL, the backend as its own user), shared by the crash cases, stopped by pid after them."""
    box = Sandbox(layout="v2").start()
    try:
        yield box
    finally:
        box.stop()


def recover_argv(box: Sandbox, reports: Path) -> list[str]:
    argv = [sys.executable, "-m", "remediation.scripts.recover_corrupted_database", "recover"]
    return argv + [
        "--target-file",
        str(box.paths["targets_file"]),
        "--target",
        "live",
        "--execute",
        "--report-dir",
        str(reports),
    ]


V2_STEPS = range(1, 8)  # logs saved, backend stopped, quarantined, salvaged, installed, backend started, healthy


@pytest.mark.parametrize("step", V2_STEPS, ids=[f"v2-killed-after-step-{n}" for n in V2_STEPS])
def test_a_v2_recovery_killed_at_any_step_resumes_from_the_quarantined_original(tmp_path, v2, step):
    db = v2.paths["db"]
    owner = (db.stat().st_uid, db.stat().st_gid)
    before = rows(db, "work_orders")
    lost = damage_a_leaf(db, "work_orders", seed=step)
    quarantine = Path(v2.paths["backup_dir"]) / "quarantine"
    originals = len(list(quarantine.glob(f"*/{db.name}")))
    env = {**os.environ, KILL_AFTER_STEP_ENV: str(step)}
    killed = subprocess.run(recover_argv(v2, tmp_path), cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)
    assert killed.returncode == -signal.SIGKILL, killed.stdout
    rerun = subprocess.run(recover_argv(v2, tmp_path), cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert rerun.returncode == EXIT_OK, rerun.stdout + rerun.stderr
    assert set(rows(db, "work_orders")) == set(before) - lost, rerun.stdout
    assert len(list(quarantine.glob(f"*/{db.name}"))) == originals + 1  # one original per recovery
    assert (db.stat().st_uid, db.stat().st_gid) == owner  # still the backend's own file


def test_a_writer_besides_the_v2_backend_makes_the_fix_refuse(tmp_path, v2):
    db = v2.paths["db"]
    damage_a_leaf(db, "work_orders", seed=99)
    before = db.read_bytes()
    writer = subprocess.Popen(
        [sys.executable, "-c", f"import sqlite3, time; c = sqlite3.connect({str(db)!r}); time.sleep(60)"]
    )
    try:
        time.sleep(0.5)
        done = subprocess.run(recover_argv(v2, tmp_path), cwd=ROOT, capture_output=True, text=True, timeout=180)
    finally:
        writer.kill()
        writer.wait()
    assert done.returncode == EXIT_REFUSED, done.stdout
    assert f"pid {writer.pid}" in done.stdout
    assert db.read_bytes() == before
    repaired = subprocess.run(recover_argv(v2, tmp_path), cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert repaired.returncode == EXIT_OK, repaired.stdout  # the sandbox is left healthy for the next case
