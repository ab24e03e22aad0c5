"""What changed since the last healthy run: the fingerprint of a target, kept beside the reports, names the change.

On a live sandbox: a healthy run, a fault, a run, whose incident must name what the fault really changed (the .env
key and the restart, the removed package, the schema, the restart's time, the new log) and hold no secret. On real
files in a temporary target: what cannot be read is unknown and never a change, nothing is written to the target,
git is read as files, and every bound holds.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import jsonschema
import psutil
import pytest
from remediation_support import make_db
from report_support import SCHEMA, project, run  # noqa: F401 (fixture)
from test_hostile_side_effects import snapshot

from fixtures.target import TargetPlugin
from observe import fingerprint
from observe.profile import read_env_file, resolve
from remediation.fingerprints import Fingerprints
from remediation.reports.changes import compare
from remediation.storage import create_once
from sandbox import Sandbox

ROOT = Path(__file__).resolve().parent.parent
KEY = b"k" * 32
# The checks that run tools or a browser: seconds each, and not what these cases are about.
NOT_SLOW = "not test_frontend_typescript_compiles and not test_frontend_build_succeeds and not test_headless_browser"


# -- on a live sandbox ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sandbox():
    """A live runbook sandbox with a node_modules of its own, stopped (by pid, in Sandbox.stop) after the module.

    A sandbox hard-links the template's node_modules; where that is a symlink into another checkout (a shared
    install), npm_missing_dependency would move that checkout's vite: it gets a hard-linked copy instead.
    """
    box = Sandbox(layout="runbook").start()
    try:
        modules = box.paths["frontend_dir"] / "node_modules"
        if modules.is_symlink():
            copy = modules.with_name(".node_modules.copy")
            subprocess.run(["cp", "-al", str(modules.resolve()), str(copy)], check=True)
            modules.unlink()
            copy.rename(modules)
            box.restart_component("frontend")  # the dev server serves from the node_modules it started with
        yield box
    finally:
        box.stop()


def run_checks(box: Sandbox, reports: Path, *selection: str) -> tuple[int, str, dict]:
    """Run the suite against the sandbox in a subprocess: (exit code, output, the incident it wrote)."""
    args = [sys.executable, "-m", "pytest", f"--target-file={box.paths['targets_file']}", "--target", "live"]
    args += [f"--report-dir={reports}", "-q", "-p", "no:randomly", *selection]
    done = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=180)
    output = done.stdout + done.stderr
    assert "Traceback" not in output and "INTERNALERROR" not in output, output[-3000:]
    return done.returncode, output, json.loads((reports / "latest.json").read_text())


def healthy_baseline(box: Sandbox, reports: Path) -> None:
    code, output, incident = run_checks(box, reports, "-m", "p1")
    assert code == 0, output[-3000:]


def changed(incident: dict) -> list[str]:
    (section,) = incident["changed"]
    assert section["target"] == "live" and section["since"] is not None, section
    return [c["text"] for c in section["changes"]]


def summary(output: str) -> list[str]:
    """The terminal's "changed since the last healthy run" lines: its head and the changes under it."""
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("changed since the last healthy run of live"))
    return [lines[start]] + [line.strip() for line in lines[start + 1 : start + 5] if line.startswith("    ")]


def test_a_healthy_run_keeps_its_fingerprint_privately_and_prints_nothing_extra(sandbox, tmp_path):
    reports = tmp_path / "reports"
    code, output, incident = run_checks(sandbox, reports, "-m", "p1")
    assert code == 0, output[-3000:]
    assert incident["changed"] == [] and "changed since" not in output
    kept = reports / "fingerprints"
    assert oct(kept.stat().st_mode & 0o777) == "0o700"
    files = sorted(p.name for p in kept.iterdir())
    assert files[0] == "key" and [f.split("-")[0] for f in files[1:]] == ["live", "live"], files
    assert {oct(p.stat().st_mode & 0o777) for p in kept.iterdir()} == {"0o600"}
    healthy, last = (json.loads(p.read_text()) for p in sorted(kept.glob("*.json")))
    assert healthy == last and healthy["run_id"] == incident["run_id"]
    assert all(not fingerprint.is_unknown(source) for source in healthy["sources"].values()), healthy["sources"]
    assert len(json.dumps(healthy)) < 1 << 20


def test_jwt_short_secret_names_the_env_key_and_the_backend_restart_and_no_secret(sandbox, tmp_path):
    reports = tmp_path / "reports"
    healthy_baseline(sandbox, reports)
    before = read_env_file(str(sandbox.paths["env_file"]))
    sandbox.inject("jwt_short_secret")
    try:
        after = read_env_file(str(sandbox.paths["env_file"]))
        code, output, incident = run_checks(sandbox, reports, "-m", "p1")
    finally:
        sandbox.clear("jwt_short_secret")
    assert code == 1 and before["SECRET_KEY"] != after["SECRET_KEY"]
    jsonschema.validate(incident, SCHEMA)
    texts = changed(incident)
    assert any(t.startswith("SECRET_KEY in backend/.env changed (file modified ") for t in texts), texts
    assert any(t.startswith("backend restarted at ") for t in texts), texts
    head, *shown = summary(output)
    assert any(t.startswith("SECRET_KEY in backend/.env changed") for t in shown), shown
    assert any(t.startswith("backend restarted at ") for t in shown), shown
    page = (reports / "latest.html").read_text()
    assert 'id="incident-changed"' in page and "SECRET_KEY in backend/.env changed" in page
    secrets = {before["SECRET_KEY"], after["SECRET_KEY"], before["FOSSAWORK_TEST_PASSWORD"]}
    written = [p for p in reports.rglob("*") if p.is_file()]
    assert len(written) >= 7, written  # two runs' JSON and HTML, latest.*, the key and two fingerprints
    for path in written:
        data = path.read_bytes()
        assert not [s for s in secrets if s.encode() in data], path


def test_npm_missing_dependency_names_the_removed_package(sandbox, tmp_path):
    reports = tmp_path / "reports"
    vite = sandbox.paths["frontend_dir"] / "node_modules" / "vite"
    version = json.loads((vite / "package.json").read_text())["version"]
    healthy_baseline(sandbox, reports)
    sandbox.inject("npm_missing_dependency")
    try:
        code, output, incident = run_checks(sandbox, reports, "-m", "p1 or frontend", "-k", NOT_SLOW)
    finally:
        sandbox.clear("npm_missing_dependency")
    assert code == 1, output[-3000:]
    assert f"node_modules: vite removed (was {version})" in changed(incident)
    assert f"node_modules: vite removed (was {version})" in summary(output)[1:]


def test_db_no_tables_names_the_schema_change(sandbox, tmp_path):
    reports = tmp_path / "reports"
    healthy_baseline(sandbox, reports)
    sandbox.inject("db_no_tables")
    try:
        code, output, incident = run_checks(sandbox, reports, "-m", "p1")
    finally:
        sandbox.clear("db_no_tables")
    assert code == 1, output[-3000:]
    texts = changed(incident)
    (schema,) = [t for t in texts if t.startswith("database schema changed: tables removed: ")]
    assert all(table in schema for table in ("users", "work_orders", "dispensers")) and "user_version 0 → 1" in schema
    assert any(t.startswith(f"database file {sandbox.paths['db']} replaced at ") for t in texts), texts
    assert schema in summary(output)[1:]


def test_a_restarted_backend_and_an_oversized_log_are_named_newest_first(sandbox, tmp_path):
    reports = tmp_path / "reports"
    healthy_baseline(sandbox, reports)
    first = sandbox.info()["pids"]["backend"]
    sandbox.inject("backend_down")
    try:
        code, output, incident = run_checks(sandbox, reports, "-m", "p1")
    finally:
        sandbox.clear("backend_down")  # starts the backend again: a new process
    assert code == 1, output[-3000:]
    assert any(t.startswith(f"backend not running (was pid {first}, running since ") for t in changed(incident))
    second = sandbox.info()["pids"]["backend"]
    restarted = datetime.fromtimestamp(psutil.Process(second).create_time(), UTC)
    sandbox.inject("log_oversized")
    try:
        code, output, incident = run_checks(sandbox, reports, "-m", "p1 or performance")
    finally:
        sandbox.clear("log_oversized")
    assert code == 1, output[-3000:]
    texts = changed(incident)
    restart = f"backend restarted at {restarted:%H:%M} UTC (was pid {first}, running since "
    (log,) = [t for t in texts if t.startswith("log backend/backend-debug.jsonl appeared: 101.0 MiB")]
    assert [t for t in texts if t.startswith(restart)], texts
    # Newest first: the log was written after the restart.
    assert texts.index(log) < next(i for i, t in enumerate(texts) if t.startswith(restart)), texts


AUDIT = """
import json, os, sys
sys.path.insert(0, sys.argv[1])
root, writes = sys.argv[4], []
WRITING = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
CHANGING = {"os.rename", "os.remove", "os.rmdir", "os.mkdir", "os.chmod", "os.chown", "os.link", "os.symlink",
            "os.truncate", "os.utime", "shutil.rmtree", "shutil.move", "shutil.copyfile"}

def hook(event, args):
    if event == "open" and str(args[0]).startswith(root):
        mode, flags = args[1] or "", args[2] or 0
        if any(c in mode for c in "wax+") or flags & WRITING:
            writes.append([event, str(args[0]), mode, flags])
    elif event == "sqlite3.connect" and "mode=ro" not in str(args[0]):
        writes.append([event, str(args[0])])
    elif event in CHANGING and root in repr(args):
        writes.append([event, repr(args)])

sys.addaudithook(hook)
from observe.fingerprint import gather
from observe.profile import resolve
taken = gather(resolve(sys.argv[2], sys.argv[3]), b"k" * 32)
print(json.dumps({"writes": writes, "unknown": [n for n, s in taken["sources"].items() if "unknown" in s]}))
"""


def test_gathering_opens_nothing_on_the_target_for_writing(sandbox):
    paths = sandbox.paths
    watched = [paths["db"], paths["env_file"], paths["credentials_dir"], paths["frontend_dir"], paths["backend_dir"]]
    before = snapshot(*watched, *(Path(f"{paths['db']}{s}") for s in ("-journal", "-wal", "-shm")))
    done = subprocess.run(
        [sys.executable, "-c", AUDIT, str(ROOT), str(paths["targets_file"]), "live", str(paths["root"])],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(done.stdout.splitlines()[-1])
    assert seen == {"writes": [], "unknown": []}, seen
    after = snapshot(*watched, *(Path(f"{paths['db']}{s}") for s in ("-journal", "-wal", "-shm")))
    assert sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k)) == []


# -- on real files -------------------------------------------------------------------------------------------


@pytest.fixture
def target(tmp_path) -> Path:
    """A deployment on disk, with no process of its own: backend code, .env, database, logs, frontend packages."""
    root = tmp_path / "target"
    for d in ("backend/app", "logs/backend", "frontend/src", "frontend/node_modules/vite"):
        (root / d).mkdir(parents=True)
    (root / "backend/app/main.py").write_text("app = None\n")
    (root / "backend/.env").write_text("SECRET_KEY=a-weak-secret-value\nDEBUG=false\n")
    make_db(root / "backend/fossawork_v2.db")
    (root / "logs/backend/backend-errors-latest.jsonl").write_text(
        '{"timestamp": "2026-11-30T01:00:00+00:00", "level": "ERROR", "message": "x"}\n' * 100
    )
    (root / "frontend/package.json").write_text('{"devDependencies": {"vite": "7.3.8"}}\n')
    (root / "frontend/src/main.ts").write_text("export {}\n")
    (root / "frontend/node_modules/vite/package.json").write_text('{"version": "7.3.8"}\n')
    (tmp_path / "targets.toml").write_text(
        f"""[t]
db_path = "{root}/backend/fossawork_v2.db"
log_dir = "{root}/logs"
env_file = "{root}/backend/.env"
frontend_dir = "{root}/frontend"
backend_cwd = "{root}/backend"
disk_path = "{root}"
backend_process = "no-such-backend-{os.getpid()}"
frontend_process = "no-such-frontend-{os.getpid()}"
"""
    )
    return root


def taken(root: Path, key: bytes = KEY, **kwargs) -> dict:
    return fingerprint.gather(resolve(root.parent / "targets.toml", "t"), key, **kwargs)


def differences(before: dict, after: dict) -> list[str]:
    """The changes between two fingerprints, leaving out the host's (memory and load move on their own)."""
    return [c["text"] for c in compare(before, after).changes if c["kind"] != "host"]


def test_an_unchanged_target_has_no_change(target):
    assert differences(taken(target), taken(target)) == []


def test_a_fact_that_cannot_be_read_is_unknown_not_changed_and_a_fifo_is_never_waited_on(target):
    before = taken(target)
    env = target / "backend/.env"
    env.unlink()
    os.mkfifo(env)  # no writer will ever come: opening it blocking would hang the run
    with sqlite3.connect(target / "backend/fossawork_v2.db") as conn:
        conn.execute("DELETE FROM users")
    start = time.monotonic()
    after = taken(target, row_budget=0)  # no time to count rows: every count is unknown
    assert time.monotonic() - start < 5
    diff = compare(before, after)
    assert [c["text"] for c in diff.changes if c["kind"] != "host"] == []
    assert any(u.startswith(".env file: unknown now (") and "FIFO" in u for u in diff.unknown), diff.unknown
    assert any(u.startswith("rows of ") and "users" in u for u in diff.unknown), diff.unknown


def test_the_fingerprint_holds_no_configuration_value_only_keyed_hashes(target):
    first, other_key = taken(target), taken(target, key=b"o" * 32)
    assert "a-weak-secret-value" not in json.dumps(first)
    keys = first["sources"]["config"]["env_file"]["keys"]
    assert set(keys) == {"SECRET_KEY", "DEBUG"}
    # A keyed hash: another key gives another hash, so a weak secret cannot be guessed without the key.
    assert keys["SECRET_KEY"] != other_key["sources"]["config"]["env_file"]["keys"]["SECRET_KEY"]
    assert any("fingerprint key changed" in u for u in compare(first, other_key).unknown)
    (target / "backend/.env").write_text("SECRET_KEY=another-value\nDEBUG=false\nNEW=1\n")
    texts = differences(first, taken(target))
    assert [t.split(" (")[0] for t in texts] == ["SECRET_KEY in backend/.env changed", "NEW added to backend/.env"]


def test_a_git_checkout_is_read_as_files_and_a_new_commit_is_named(target):
    git = ["git", "-C", str(target), "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run([*git, "init", "-q", "-b", "main"], check=True)
    subprocess.run([*git, "commit", "-q", "--allow-empty", "-m", "one"], check=True)
    before = taken(target)
    subprocess.run([*git, "commit", "-q", "--allow-empty", "-m", "two"], check=True)
    subprocess.run([*git, "pack-refs", "--all"], check=True)  # the branch now lives in packed-refs only
    head = subprocess.run([*git, "rev-parse", "HEAD"], check=True, capture_output=True, text=True).stdout.strip()
    untouched = snapshot(target / ".git")
    after = taken(target)
    assert snapshot(target / ".git") == untouched  # no git command: no index refresh, no lock file
    old = before["sources"]["code"]["checkouts"][str(target)]["commit"]
    assert after["sources"]["code"]["checkouts"][str(target)]["commit"] == head
    assert f"checkout {target}: commit {old[:10]} → {head[:10]} (main)" in differences(before, after)


def test_logs_and_rows_count_as_changes_past_their_thresholds_only(target):
    before = taken(target)
    log = target / "logs/backend/backend-errors-latest.jsonl"
    with log.open("a") as handle:
        handle.write('{"timestamp": "2026-11-30T01:05:00+00:00", "level": "ERROR", "message": "y"}\n' * 50)
    with sqlite3.connect(target / "backend/fossawork_v2.db") as conn:
        conn.execute("INSERT INTO users VALUES (100, 'new@x')")
    assert differences(before, taken(target)) == []  # a log that grew a little, a table that grew: every day
    log.write_text("")
    with sqlite3.connect(target / "backend/fossawork_v2.db") as conn:
        conn.execute("DELETE FROM work_orders WHERE id < 100")
    texts = differences(before, taken(target))
    assert "table work_orders: 200 rows (was 300)" in texts, texts
    assert any(t.startswith("log backend/backend-errors-latest.jsonl shrank from ") for t in texts), texts


def test_a_node_modules_of_thousands_of_packages_stays_bounded(target):
    modules = target / "frontend/node_modules"
    for i in range(fingerprint.MAX_PACKAGES + 500):
        (modules / f"pkg{i:05d}").mkdir()
    before = taken(target)
    npm = before["sources"]["npm"]
    assert len(npm["packages"]) == fingerprint.MAX_PACKAGES and npm["complete"] is False
    assert len(json.dumps(before)) < 1 << 20
    shutil.rmtree(modules / "pkg00000")
    # Names past the bound were not kept: a list that is not complete is not read as "removed".
    assert not [t for t in differences(before, taken(target)) if "removed" in t]


def test_the_key_is_created_once_private_and_never_replaced(tmp_path, target):
    plugin = TargetPlugin(tmp_path / "targets.toml", "t", resolve(tmp_path / "targets.toml", "t"))
    kept = Fingerprints(tmp_path / "reports", {"t": plugin}, "run")
    key = kept.key()
    assert len(key) == 32 and Fingerprints(tmp_path / "reports", {"t": plugin}, "run").key() == key
    assert oct((tmp_path / "reports/fingerprints/key").stat().st_mode & 0o777) == "0o600"
    assert oct((tmp_path / "reports/fingerprints").stat().st_mode & 0o777) == "0o700"
    assert create_once(tmp_path / "reports/fingerprints/key", "another") == key.hex()
    assert [p.name for p in (tmp_path / "reports/fingerprints").iterdir()] == ["key"]  # no temporary file left


def test_a_remote_target_is_not_fingerprinted_and_its_section_says_why(tmp_path):
    (tmp_path / "targets.toml").write_text('[r]\nhost = "remote"\n')
    plugin = TargetPlugin(tmp_path / "targets.toml", "r", resolve(tmp_path / "targets.toml", "r"))
    kept = Fingerprints(tmp_path / "reports", {"r": plugin}, "run")
    (section,) = kept.sections({"r"})
    assert section["since"] is None and section["note"].startswith("host = 'remote': ")
    kept.keep(set())
    assert not (tmp_path / "reports").exists()  # no key, no fingerprint: nothing of it is kept


# -- the incident's section, on an inner suite (its P1 and P2 checks fail, its P3 check passes) ---------------


def test_a_failing_run_says_when_no_healthy_run_is_known_then_compares_with_the_last_one(project):  # noqa: F811
    result = run(project)
    result.assert_outcomes(passed=1, failed=2, skipped=1)
    result.stdout.fnmatch_lines(
        ["changed since the last healthy run of local: not known (no earlier healthy run of this target recorded *)"]
    )
    run(project, "-m", "p3").assert_outcomes(passed=1)  # healthy: becomes the baseline, prints nothing extra
    healthy = json.loads(project.path.joinpath("reports", "latest.json").read_text())
    assert healthy["changed"] == []
    result = run(project)
    incident = json.loads(project.path.joinpath("reports", "latest.json").read_text())
    jsonschema.validate(incident, SCHEMA)
    (section,) = incident["changed"]
    assert section["since_run"] == healthy["run_id"] and section["note"] is None
    result.stdout.fnmatch_lines(["changed since the last healthy run of local (*)*"])


def test_no_fingerprint_keeps_none_and_names_no_change(project):  # noqa: F811
    run(project, "--no-fingerprint").assert_outcomes(passed=1, failed=2, skipped=1)
    assert not project.path.joinpath("reports", "fingerprints").exists()
    assert json.loads(project.path.joinpath("reports", "latest.json").read_text())["changed"] == []
