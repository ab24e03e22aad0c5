"""The bundled sandbox: real processes on 127.0.0.1, started and stopped by pid."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import re
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jwt
import psutil
import pytest
import requests

from observe.profile import read_env_file
from sandbox import FAULTS, Sandbox, SandboxError, logfmt
from sandbox.core import SERVICE_USER

PROJECT = Path(__file__).resolve().parents[1]


def _cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(PROJECT))
    return subprocess.run(
        [sys.executable, "-m", "sandbox", *args], cwd=PROJECT, env=env, capture_output=True, text=True, timeout=timeout
    )


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _wait_gone(pids, timeout=10.0) -> list[int]:
    deadline = time.monotonic() + timeout
    while True:
        alive = [p for p in pids if not _gone(p)]
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.05)


@pytest.fixture(scope="module", params=["runbook", "v2"])
def sb(request):
    with Sandbox(layout=request.param) as box:
        yield box


@pytest.fixture(scope="module")
def runbook():
    with Sandbox(layout="runbook") as box:
        yield box


def _secrets(box: Sandbox) -> dict:
    return read_env_file(str(box.paths["env_file"]))


def _login(box: Sandbox) -> dict:
    pv = box.profile_values()
    r = requests.post(
        pv["api_url"] + pv["endpoints"]["login"],
        json={"username": pv["test_user"], "password": _secrets(box)["FOSSAWORK_TEST_PASSWORD"]},
        timeout=5,
    )
    assert r.status_code == 200, r.text
    return r.json()


def _db_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_both_layouts_answer(sb):
    pv = sb.profile_values()
    assert requests.get(pv["api_url"] + pv["endpoints"]["health"], timeout=5).status_code == 200
    body = _login(sb)
    assert body["token_type"] == "bearer" and body["access_token"]
    headers = {"Authorization": f"Bearer {body['access_token']}"}
    for key in ("work_orders", "dispensers"):
        url = pv["api_url"] + pv["endpoints"][key].format(user_id=body["user_id"])
        r = requests.get(url, headers=headers, timeout=5)
        assert r.status_code == 200 and isinstance(r.json(), list) and len(r.json()) == 100
        assert requests.get(url, timeout=5).status_code == 401
    fe = requests.get(pv["frontend_url"], timeout=5)
    assert fe.status_code == 200 and "text/html" in fe.headers["content-type"]
    wf = requests.get(pv["workfossa_url"], timeout=5)
    assert wf.status_code == 200 and "<title>WorkFossa</title>" in wf.text and 'type="password"' in wf.text
    # the profile loads with the project's schema and names no secret
    from observe.profile import resolve

    profile = resolve(sb.paths["targets_file"], "live")
    assert profile.api_url == pv["api_url"]
    text = sb.paths["targets_file"].read_text()
    assert _secrets(sb)["SECRET_KEY"] not in text and _secrets(sb)["FOSSAWORK_TEST_PASSWORD"] not in text
    # healthy file modes
    assert sb.paths["db"].stat().st_mode & 0o777 == 0o600
    assert sb.paths["env_file"].stat().st_mode & 0o777 == 0o600


def test_v2_unknown_route_is_401_without_token():
    with Sandbox(layout="v2") as box:
        pv = box.profile_values()
        assert requests.get(pv["api_url"] + "/api/does-not-exist", timeout=5).status_code == 401
        token = _login(box)["access_token"]
        r = requests.get(pv["api_url"] + "/api/does-not-exist", headers={"Authorization": f"Bearer {token}"}, timeout=5)
        assert r.status_code == 404


def test_auth_rejects_bad_tokens(runbook):
    pv = runbook.profile_values()
    url = pv["api_url"] + pv["endpoints"]["validate"]
    body = _login(runbook)
    secret = _secrets(runbook)["SECRET_KEY"]
    claims = {"sub": pv["test_user"], "user_id": body["user_id"]}
    now = int(time.time())
    bad = {
        "missing": None,
        "malformed": "not.a.jwt",
        "expired": jwt.encode({**claims, "exp": now - 60}, secret, algorithm="HS256"),
        "wrong_signature": jwt.encode({**claims, "exp": now + 600}, "x" * 48, algorithm="HS256"),
        "alg_none": jwt.encode({**claims, "exp": now + 600}, None, algorithm="none"),
    }
    for name, token in bad.items():
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        assert requests.get(url, headers=headers, timeout=5).status_code == 401, name
    r = requests.get(url, headers={"Authorization": f"Bearer {body['access_token']}"}, timeout=5)
    assert r.status_code == 200 and r.json()["valid"] is True
    wrong = requests.post(
        pv["api_url"] + pv["endpoints"]["login"], json={"username": pv["test_user"], "password": "nope"}, timeout=5
    )
    assert wrong.status_code == 401


def test_reads_do_not_touch_the_database(runbook):
    before = _db_digest(runbook.paths["db"])
    pv = runbook.profile_values()
    body = _login(runbook)
    headers = {"Authorization": f"Bearer {body['access_token']}"}
    for key in ("work_orders", "dispensers", "validate"):
        requests.get(pv["api_url"] + pv["endpoints"][key], headers=headers, timeout=5)
    requests.post(pv["api_url"] + pv["endpoints"]["logout"], headers=headers, timeout=5)
    assert _db_digest(runbook.paths["db"]) == before
    assert not Path(str(runbook.paths["db"]) + "-wal").exists()


def test_fault_roundtrips(runbook):
    pv = runbook.profile_values()
    api = pv["api_url"]
    db = runbook.paths["db"]
    digest = _db_digest(db)
    token = _login(runbook)["access_token"]
    headers = {"Authorization": f"Bearer {token}"}

    runbook.inject("api_500")
    assert requests.get(api + pv["endpoints"]["dispensers"], headers=headers, timeout=5).status_code == 500
    runbook.clear("api_500")
    assert requests.get(api + pv["endpoints"]["dispensers"], headers=headers, timeout=5).status_code == 200

    runbook.inject("db_corrupt")
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        assert conn.execute("PRAGMA quick_check").fetchall() != [("ok",)]
    runbook.clear("db_corrupt")
    assert _db_digest(db) == digest

    old_pid = runbook.info()["pids"]["backend"]
    runbook.inject("backend_down")
    assert _wait_gone([old_pid]) == []
    with pytest.raises(requests.ConnectionError):
        requests.get(api + pv["endpoints"]["health"], timeout=2)
    runbook.clear("backend_down")
    assert requests.get(api + pv["endpoints"]["health"], timeout=5).status_code == 200

    runbook.inject("db_size_threshold")
    from observe.profile import resolve

    assert resolve(runbook.paths["targets_file"], "live").thresholds.db_max_bytes == 1024
    runbook.clear("db_size_threshold")
    assert resolve(runbook.paths["targets_file"], "live").thresholds.db_max_bytes != 1024

    errors = runbook.paths["log_dir"] / "backend" / "backend-errors-latest.jsonl"
    size = errors.stat().st_size
    runbook.inject("backend_error_burst")
    assert errors.stat().st_size > size
    runbook.clear("backend_error_burst")
    assert errors.stat().st_size == size

    runbook.inject("frontend_not_html")
    r = requests.get(pv["frontend_url"], timeout=5)
    assert "application/json" in r.headers["content-type"]
    runbook.clear("frontend_not_html")
    assert "text/html" in requests.get(pv["frontend_url"], timeout=5).headers["content-type"]

    assert runbook.active_faults == set()
    assert _db_digest(db) == digest


def test_cli_up_down_leaves_no_process(tmp_path):
    up = _cli("up", "--layout", "v2", "--fault", "backend_duplicate", "--json")
    assert up.returncode == 0, up.stderr
    info = json.loads(up.stdout)
    pids = list(info["pids"].values())
    assert len(pids) >= 4 and all(not _gone(p) for p in pids)
    assert info["faults"] == ["backend_duplicate"]
    assert _cli("fault", "add", "db_locked", "--dir", info["root"]).returncode == 0
    state = json.loads((Path(info["root"]) / "sandbox.json").read_text())
    pids = [rec["pid"] for rec in state["procs"].values()]
    assert _cli("fault", "clear", "--all", "--dir", info["root"]).returncode == 0
    down = _cli("down", "--dir", info["root"])
    assert down.returncode == 0, down.stderr
    assert _wait_gone(pids) == []
    assert not Path(info["root"]).exists()


def test_cli_bad_input_is_one_line_exit_2(tmp_path):
    for args in (
        ["fault", "add", "no_such_fault"],
        ["up", "--layout", "nope"],
        ["fault", "add", "api_500", "--dir", str(tmp_path)],
    ):
        r = _cli(*args)
        assert r.returncode == 2, (args, r.stderr)
        assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
    listing = _cli("fault", "list")
    assert listing.returncode == 0 and all(name in listing.stdout for name in FAULTS)


def test_unknown_fault_and_layout_raise():
    with pytest.raises(SandboxError):
        Sandbox(layout="nope")
    with pytest.raises(SandboxError):
        Sandbox(faults=["nope"])


# --- FossaWork V2 as deployed (the v2 layout) ---------------------------------------------------


@pytest.fixture(scope="module")
def v2():
    with Sandbox(layout="v2") as box:
        yield box


def _rows(box: Sandbox, sql: str) -> list[tuple]:
    conn = sqlite3.connect(f"file:{box.paths['db']}?mode=ro", uri=True)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def _stored_password(box: Sandbox) -> tuple[str, str]:
    """(decrypted WorkFossa password, updated_at) stored for the test user."""
    from cryptography.fernet import Fernet

    ((token, updated),) = _rows(
        box,
        "SELECT c.encrypted_password, c.updated_at FROM user_credentials c JOIN users u ON u.id = c.user_id"
        " WHERE u.email = 'test@example.com' AND c.service_name = 'workfossa'",
    )
    return Fernet(_secrets(box)["FOSSAWORK_MASTER_KEY"].encode()).decrypt(token.encode()).decode(), updated


def _try_login(box: Sandbox, password: str) -> requests.Response:
    pv = box.profile_values()
    body = {"username": pv["test_user"], "password": password}
    return requests.post(pv["api_url"] + pv["endpoints"]["login"], json=body, timeout=10)


def _log_text(box: Sandbox, kind: str) -> str:
    path = logfmt.log_path(box.paths["log_dir"], "v2", kind)
    return path.read_text(encoding="utf-8")


def test_a_v2_login_writes_the_last_used_time_and_re_encrypts_the_credentials(v2):
    ((before,),) = _rows(v2, "SELECT encrypted_password FROM user_credentials WHERE id = 1")
    _login(v2)
    ((last_used,),) = _rows(v2, "SELECT last_used FROM users WHERE email = 'test@example.com'")
    ((after,),) = _rows(v2, "SELECT encrypted_password FROM user_credentials WHERE id = 1")
    now = datetime.now(UTC).replace(tzinfo=None)
    assert abs(now - datetime.fromisoformat(last_used)) < timedelta(seconds=30)
    assert after != before  # a fresh Fernet token: new IV and time
    assert _stored_password(v2)[0] == _secrets(v2)["FOSSAWORK_TEST_PASSWORD"]


def test_a_v2_production_login_checks_the_password_on_workfossa_which_counts_a_failure(v2):
    counts = v2.workfossa_logins()
    start = time.monotonic()
    answer = _try_login(v2, "wrong-password")
    assert answer.status_code == 401
    assert time.monotonic() - start >= 2.0  # the WorkFossa login takes seconds
    assert v2.workfossa_logins() == {**counts, "failed": counts["failed"] + 1}


def test_v2_development_mode_accepts_any_password_and_stores_it(v2):
    counts = v2.workfossa_logins()
    v2.inject("dev_mode_login")
    try:
        answer = _try_login(v2, "anything-at-all")
        assert answer.status_code == 200 and answer.json()["access_token"]
        assert _stored_password(v2)[0] == "anything-at-all"
        assert v2.workfossa_logins() == counts  # never asked
    finally:
        v2.clear("dev_mode_login")
    _login(v2)  # production mode again: the real password is checked and stored back
    assert _stored_password(v2)[0] == _secrets(v2)["FOSSAWORK_TEST_PASSWORD"]


def test_the_v2_database_is_in_wal_mode(v2):
    header = v2.paths["db"].read_bytes()[:20]
    assert header[18:20] == b"\x02\x02"  # file format read/write versions 2: WAL
    assert _rows(v2, "PRAGMA journal_mode") == [("wal",)]


def test_the_v2_backend_runs_as_its_own_user_who_cannot_write_a_root_file(v2):
    backend = psutil.Process(v2.info()["pids"]["backend"])
    account = v2.backend_user
    if os.geteuid() != 0:
        assert not account["dedicated"] and "cannot switch users" in account["why"]
        pytest.skip("only root can run the backend as its own user")
    assert account["dedicated"] and account["name"] == SERVICE_USER
    assert backend.uids().real == backend.uids().effective == account["uid"] != os.getuid()
    assert v2.paths["db"].stat().st_uid == v2.paths["log_dir"].stat().st_uid == account["uid"]
    db, before = v2.paths["db"], v2.paths["db"].stat()
    os.chown(db, 0, 0)
    os.chmod(db, 0o644)
    try:
        answer = _try_login(v2, _secrets(v2)["FOSSAWORK_TEST_PASSWORD"])
    finally:
        os.chown(db, before.st_uid, before.st_gid)
        os.chmod(db, before.st_mode & 0o777)
    assert answer.status_code == 503
    assert "attempt to write a readonly database" in _log_text(v2, "general")


def test_a_v2_backend_restart_empties_its_log_files(v2):
    marker = f"marker-{time.time_ns()}"
    for kind in ("general", "errors"):
        logfmt.append(logfmt.log_path(v2.paths["log_dir"], "v2", kind), [marker])
    v2.restart_component("backend")
    pid = v2.info()["pids"]["backend"]
    assert marker not in _log_text(v2, "general") and f"Application startup complete (pid {pid})" in _log_text(
        v2, "general"
    )
    assert _log_text(v2, "errors") == ""


def test_a_v2_backend_started_without_its_database_creates_one_holding_only_the_scheduler_table(v2):
    v2.inject("db_missing")
    try:
        assert not v2.paths["db"].exists()
        v2.restart_component("backend")
        fresh = v2.paths["db"].stat()
        assert _rows(v2, "SELECT name FROM sqlite_master WHERE type = 'table'") == [("apscheduler_jobs",)]
        assert fresh.st_mode & 0o777 == 0o644 and fresh.st_uid == v2.backend_user["uid"]
    finally:
        v2.clear("db_missing")
    assert ("users",) in _rows(v2, "SELECT name FROM sqlite_master WHERE type = 'table'")
    _login(v2)


def test_v2_errors_go_to_the_general_log_and_the_errors_log_stays_empty(v2):
    v2.inject("db_not_a_database")
    try:
        assert _try_login(v2, _secrets(v2)["FOSSAWORK_TEST_PASSWORD"]).status_code == 503
        general = _log_text(v2, "general")
    finally:
        v2.clear("db_not_a_database")
    line = re.compile(
        r"^(\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}) \| ERROR +\| [\w.]+ +\| \w+:\d+ +\| Login database error: "
        r"sqlite3\.DatabaseError: file is not a database$",
        re.M,
    )
    (stamp,) = line.findall(general)
    assert abs(datetime.now() - datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S")) < timedelta(seconds=30)  # local
    assert _log_text(v2, "errors") == ""


def test_a_v2_import_error_kills_the_backend_with_its_traceback_in_the_journal_only(v2):
    pid = v2.info()["pids"]["backend"]
    v2.inject("import_error")
    try:
        crashed = v2.info()["pids"]["backend"]
        assert crashed != pid and _gone(crashed)
        journal = v2.paths["backend_journal"].read_text()
        assert "Traceback (most recent call last)" in journal
        assert "ModuleNotFoundError: No module named 'app.routes'" in journal
        assert "ModuleNotFoundError" not in _log_text(v2, "general")
    finally:
        v2.clear("import_error")
    pv = v2.profile_values()
    assert requests.get(pv["api_url"] + "/health", timeout=5).status_code == 200


def test_v2_automation_outcomes_are_rows_of_automation_jobs_not_log_lines(v2):
    statuses = "SELECT status, COUNT(*) FROM automation_jobs GROUP BY status ORDER BY status"
    assert _rows(v2, statuses) == [("completed", 19), ("failed", 1)]
    ((newest,),) = _rows(v2, "SELECT MAX(completed_at) FROM automation_jobs")
    assert datetime.now(UTC).replace(tzinfo=None) - datetime.fromisoformat(newest) < timedelta(hours=1)
    v2.inject("automation_failure_60")
    try:
        assert _rows(v2, statuses) == [("completed", 8), ("failed", 12)]
        assert _log_text(v2, "automation") == ""
    finally:
        v2.clear("automation_failure_60")
    assert _rows(v2, statuses) == [("completed", 19), ("failed", 1)]


def test_v2_health_answers_200_with_a_static_body_on_a_garbage_database(v2):
    url = v2.profile_values()["api_url"] + "/health"
    v2.inject("db_not_a_database")
    try:
        answer = requests.get(url, timeout=5)
    finally:
        v2.clear("db_not_a_database")
    assert answer.status_code == 200 and answer.json()["status"] == "healthy"


def test_v2_serves_the_routes_as_deployed(v2):
    pv = v2.profile_values()
    api, body = pv["api_url"], _login(v2)
    auth = {"Authorization": f"Bearer {body['access_token']}"}
    for runbook_only in ("/api/health", "/api/auth/validate", "/api/work-orders", "/api/dispensers"):
        assert requests.get(api + runbook_only, headers=auth, timeout=5).status_code == 404, runbook_only
        assert requests.get(api + runbook_only, timeout=5).status_code == 401, runbook_only
    assert requests.get(api + "/api/auth/me", timeout=5).status_code == 401
    assert requests.get(api + "/api/auth/me", headers=auth, timeout=5).json()["email"] == pv["test_user"]
    orders = requests.get(f"{api}/api/v1/work-orders/?user_id={body['user_id']}", headers=auth, timeout=5).json()
    assert len(orders) == 100 and all(len(order["dispensers"]) == 3 for order in orders)
    assert requests.get(api + "/api/auth/status", timeout=5).json()["dev_mode"] is False
    assert requests.get(api + "/api/setup/status", timeout=5).json()["user_count"] == 2
    metrics = requests.get(api + "/metrics", timeout=5)
    assert metrics.headers["content-type"].startswith("text/plain") and "fossawork_http_requests_total" in metrics.text


def test_only_the_cors_fault_makes_a_401_reflect_any_origin_with_credentials(v2):
    url = v2.profile_values()["api_url"] + "/api/auth/me"
    origin = {"Origin": "https://attacker.example"}
    healthy = requests.get(url, headers=origin, timeout=5)
    assert healthy.status_code == 401 and "access-control-allow-origin" not in healthy.headers
    v2.inject("cors_reflects_origin")
    try:
        broken = requests.get(url, headers=origin, timeout=5)
    finally:
        v2.clear("cors_reflects_origin")
    assert broken.status_code == 401
    assert broken.headers["access-control-allow-origin"] == "https://attacker.example"
    assert broken.headers["access-control-allow-credentials"] == "true"


def test_disk_nearly_full_fills_the_database_filesystem_with_logs_that_compress(v2):
    if v2.state["data_fs"]["type"] != "tmpfs":
        with pytest.raises(SandboxError, match="tmpfs"):
            v2.inject("disk_nearly_full")
        return
    data = v2.paths["data"]
    v2.inject("disk_nearly_full")
    try:
        full = os.statvfs(data)
        logs = sorted((v2.paths["log_dir"] / "backend").glob("backend-debug-*.jsonl"))
        with open(logs[-1], "rb") as handle:
            sample = handle.read(1 << 20)
    finally:
        v2.clear("disk_nearly_full")
    assert full.f_bavail < full.f_blocks * 0.10
    assert len(gzip.compress(sample)) < len(sample) / 20  # rotating and gzipping them frees the space
    after = os.statvfs(data)
    assert after.f_bavail > after.f_blocks * 0.90
