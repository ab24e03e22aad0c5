"""The bundled sandbox: real processes on 127.0.0.1, started and stopped by pid."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import jwt
import psutil
import pytest
import requests

from observe.profile import read_env_file
from sandbox import FAULTS, Sandbox, SandboxError

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
