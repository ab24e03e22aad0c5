"""Default probes change nothing; the opt-in probes write only what README says, and never at the same time.

Two real targets. tests/login_writes_app.py is a backend whose login writes as FossaWork V2's does (last-used
time, credentials re-encrypted into user_credentials, a "WorkFossa" login counted) and records every request
that reaches it; it runs under uvicorn over a WAL-mode SQLite file. The runbook sandbox proves, with its real
auth faults, that the default probes (a signed token, an empty login body, GET on logout) still catch them; the
fault matrix proves the login checks with the opt-ins on.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path

import pytest
import requests
from cryptography.fernet import Fernet
from hostile_servers import assert_ran_cleanly, offline_profile, run_suite, write_targets

from observe.api import DEFAULT_SECRETS
from observe.db import connect_ro
from sandbox import Sandbox, seed
from sandbox.seed import random_secret

TESTS = Path(__file__).resolve().parent
TEST_USER = "test@example.com"  # the synthetic user the opt-ins log in as
OTHERS = ("alice@example.com", "bob@example.com")
OPT_INS = ("FOSSAWORK_LOGIN_PROBE", "FOSSAWORK_WRONG_PASSWORD_PROBE", "FOSSAWORK_WRONG_PASSWORD_THIRD_PARTY")
DEFAULTS = dict.fromkeys(OPT_INS, "false")  # explicit, whatever a generated profile opts into
ALL_ON = dict.fromkeys(OPT_INS, "true")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LoginApp:
    """tests/login_writes_app.py under uvicorn, its database and its record of requests."""

    def __init__(self, root: Path, accept_any: bool, secret_key: str | None = None, login_seconds: float = 0.2):
        self.root = root
        self.db = root / "backend" / "fossawork_v2.db"
        self.record = root / "requests.jsonl"
        self.secret_key = secret_key or random_secret(48)
        # What the suite is told the secret is (environment, env_file): the app's own unless a test says otherwise.
        self.told_secret_key = self.secret_key
        self.fernet_key = Fernet.generate_key()
        self.fernet = Fernet(self.fernet_key)
        self.passwords = {email: random_secret(20) for email in (TEST_USER, *OTHERS)}
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._seed()
        env = {
            **os.environ,
            "APP_DB": str(self.db),
            "APP_RECORD": str(self.record),
            "APP_SECRET_KEY": self.secret_key,
            "APP_FERNET_KEY": self.fernet_key.decode(),
            "APP_ACCEPT_ANY": "1" if accept_any else "0",
            "APP_PASSWORDS": json.dumps(self.passwords),
            "APP_LOGIN_SECONDS": str(login_seconds),
        }
        command = [sys.executable, "-m", "uvicorn", "login_writes_app:app", "--app-dir", str(TESTS)]
        command += ["--host", "127.0.0.1", "--port", str(self.port), "--log-level", "warning"]
        self.process = subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while True:
            try:
                if requests.get(self.url + "/health", timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline or self.process.poll() is not None:
                self.stop()
                raise RuntimeError("the login app did not start within 30 s")
            time.sleep(0.1)
        self.record.write_text("")  # the readiness probes above are not the suite's

    def _seed(self) -> None:
        self.db.parent.mkdir(parents=True)
        conn = sqlite3.connect(self.db, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("CREATE TABLE users (id TEXT PRIMARY KEY, email TEXT UNIQUE, last_used REAL)")
        conn.execute("CREATE TABLE user_credentials (user_id TEXT PRIMARY KEY REFERENCES users(id), encrypted BLOB)")
        conn.execute("CREATE TABLE work_orders (id INTEGER PRIMARY KEY, user_id TEXT REFERENCES users(id))")
        for i, (email, password) in enumerate(self.passwords.items()):
            stored = self.fernet.encrypt(json.dumps({"username": email, "password": password}).encode())
            conn.execute("INSERT INTO users VALUES (?, ?, ?)", (f"user-{i}", email, 1000.0 + i))
            conn.execute("INSERT INTO user_credentials VALUES (?, ?)", (f"user-{i}", stored))
            conn.execute("INSERT INTO work_orders (user_id) VALUES (?)", (f"user-{i}",))
        conn.close()
        self.db.chmod(0o600)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)

    def rows(self) -> dict[str, tuple]:
        """email -> (last_used, encrypted credentials), read after the app has stopped."""
        with sqlite3.connect(f"file:{self.db}?mode=ro", uri=True) as conn:
            query = "SELECT email, last_used, encrypted FROM users JOIN user_credentials ON user_id = id"
            return {email: (last_used, encrypted) for email, last_used, encrypted in conn.execute(query)}

    def stored_password(self, email: str) -> str:
        return json.loads(self.fernet.decrypt(self.rows()[email][1]))["password"]

    def requests(self) -> list[dict]:
        return [json.loads(line) for line in self.record.read_text().splitlines()]

    def run_suite(self, tmp_path: Path, env: dict, select: tuple[str, ...] = ("-m", "auth or backend")):
        values = offline_profile(
            tmp_path,
            self.url,
            db_path=str(self.db),
            db_tables=["users", "user_credentials", "work_orders"],
            credentials_dir="",
            credentials_table="user_credentials",
            test_user=TEST_USER,
            endpoints={
                "health": "/health",
                "validate": "/api/auth/me",
                "work_orders": "/api/v1/work-orders/?user_id={user_id}",
                "dispensers": "/api/v1/work-orders/?user_id={user_id}",
            },
        )
        targets = write_targets(tmp_path / "t.toml", "app", values)
        secrets = {"SECRET_KEY": self.told_secret_key, "FOSSAWORK_TEST_PASSWORD": self.passwords[TEST_USER]}
        return run_suite(targets, "app", *select, env={**secrets, **env})


@pytest.fixture
def login_app(tmp_path):
    """Start the app (``login_app(accept_any=False)``); stopped by pid after the test."""
    started = []

    def start(accept_any: bool = False, **options) -> LoginApp:
        started.append(LoginApp(tmp_path / "target", accept_any, **options))
        return started[-1]

    yield start
    for app in started:
        app.stop()


def directory_state(directory: Path) -> dict[str, tuple[int, int, bytes]]:
    return {p.name: (p.stat().st_size, p.stat().st_mtime_ns, p.read_bytes()) for p in directory.iterdir()}


def test_the_default_probes_change_nothing_and_reach_no_login_handler(tmp_path, login_app):
    app = login_app()
    before = directory_state(app.db.parent)
    run = app.run_suite(tmp_path, DEFAULTS)
    app.stop()
    assert_ran_cleanly(run)
    seen = app.requests()
    assert [r for r in seen if "handler" in r or "workfossa_login" in r] == [], "a login handler ran"
    logins = [r for r in seen if r.get("path") == "/api/auth/login"]
    assert [(r["method"], r["status"]) for r in logins] == [("POST", 422)]  # the empty body, refused by FastAPI
    assert directory_state(app.db.parent) == before, "the database or its directory changed"
    # Auth was still checked: the signed token was accepted, the protected route answered for the test user.
    for check in (
        "test_token_from_login_validates",
        "test_api_endpoint_answers_200_with_json[work_orders]",
        "test_auth_route_exists[login]",
        "test_auth_route_exists[validate]",
        "test_auth_route_exists[logout]",
        "test_tokens_signed_with_default_secrets_are_refused",
    ):
        assert run.outcome(check) == "passed", (check, run.cases[check], run.output[-3000:])
    assert "login_probe is off" in run.message("test_login_with_test_user_succeeds")
    assert "wrong_password_probe is off" in run.message("test_login_rejects_wrong_password")


def test_the_login_probe_writes_only_the_synthetic_users_rows(tmp_path, login_app):
    app = login_app()
    before = app.rows()
    run = app.run_suite(tmp_path, {**DEFAULTS, "FOSSAWORK_LOGIN_PROBE": "true"})
    app.stop()
    assert_ran_cleanly(run)
    assert run.outcome("test_login_with_test_user_succeeds") == "passed", run.output[-3000:]
    assert run.outcome("test_token_from_login_validates") == "passed"
    seen = app.requests()
    assert [r["username"] for r in seen if "handler" in r] == [TEST_USER]  # one login
    assert [r["failed"] for r in seen if "workfossa_login" in r] == [False]  # no failed WorkFossa login
    assert [r["status"] for r in seen if r.get("path") == "/api/auth/logout" and r["method"] == "POST"] == [200]
    after = app.rows()
    assert {email: after[email] for email in OTHERS} == {email: before[email] for email in OTHERS}
    assert after[TEST_USER][0] > before[TEST_USER][0]  # last used now
    assert app.stored_password(TEST_USER) == app.passwords[TEST_USER]


@pytest.mark.parametrize("accept_any", [False, True], ids=["workfossa-checks-passwords", "dev-mode-accepts-any"])
def test_the_wrong_password_goes_first_and_never_beside_the_login(tmp_path, login_app, accept_any):
    app = login_app(accept_any=accept_any)
    before = app.rows()
    run = app.run_suite(tmp_path, ALL_ON)
    app.stop()
    assert_ran_cleanly(run)
    seen = app.requests()
    logins = [r for r in seen if r.get("path") == "/api/auth/login" and r["status"] != 422]
    assert len(logins) == 2
    first, second = sorted(logins, key=lambda r: r["start"])
    assert first["end"] <= second["start"], "the wrong-password and the real login overlapped"
    assert [r["failed"] for r in seen if "workfossa_login" in r] == [not accept_any, False]
    # Stored last, the right password: a backend that stores any password it accepts keeps the real one.
    assert app.stored_password(TEST_USER) == app.passwords[TEST_USER]
    assert {email: app.rows()[email] for email in OTHERS} == {email: before[email] for email in OTHERS}
    wrong = run.outcome("test_login_rejects_wrong_password")
    assert wrong == ("failed" if accept_any else "passed"), run.cases["test_login_rejects_wrong_password"]


def test_a_backend_signing_with_a_published_secret_fails_whatever_the_suite_reads(tmp_path, login_app):
    # The running process took a published secret (its environment wins over .env); the suite reads a strong one.
    published = DEFAULT_SECRETS["FastAPI tutorial"]
    app = login_app(secret_key=published)
    app.told_secret_key = random_secret(48)
    run = app.run_suite(tmp_path, DEFAULTS)
    app.stop()
    assert_ran_cleanly(run)
    assert run.outcome("test_jwt_secret_is_not_a_known_default") == "passed"  # the strong one it reads
    check = "test_tokens_signed_with_default_secrets_are_refused"
    assert run.outcome(check) == "failed", run.cases[check]
    message = run.message(check)
    assert "GET /api/auth/me" in message.replace(app.url, "") and "-> 200" in message, message
    assert "'FastAPI tutorial'" in message, message
    assert published not in run.output and published not in message  # the backend's secret is never printed


@pytest.mark.parametrize(
    "login_timeout, outcome", [(5.0, "passed"), (0.5, "failed")], ids=["within-timeouts.login", "past-it"]
)
def test_a_slow_login_waits_timeouts_login_and_hangs_no_other_probe(tmp_path, login_app, login_timeout, outcome):
    # The login takes 2 s, twice timeouts.read (1 s): only timeouts.login decides, and its timeout is the login's.
    app = login_app(login_seconds=2.0)
    env = {**DEFAULTS, "FOSSAWORK_LOGIN_PROBE": "true", "FOSSAWORK_TIMEOUTS_LOGIN": str(login_timeout)}
    run = app.run_suite(tmp_path, env, ("-k", "test_login_with_test_user_succeeds or test_api_latency"))
    app.stop()
    assert_ran_cleanly(run)
    login = "test_login_with_test_user_succeeds"
    assert run.outcome(login) == outcome, run.cases[login]
    if outcome == "failed":
        message = run.message(login)
        assert f"timeout after {login_timeout:.1f} s (timeouts.login)" in message, message
        assert f"within timeouts.login = {login_timeout:g} s" in message, message
    # The health route answered: the latency samples after the login are sent, not written off as a hung API.
    assert run.outcome("test_api_latency_is_under_threshold") == "passed", run.cases


# -- the default probes against the sandbox's real auth faults ---------------------------------------

# fault -> the auth and backend checks it fails with the default probes (no login, no wrong password).
DEFAULT_MATRIX = {
    "login_500": {"test_auth_route_exists[login]"},
    "validate_rejects_valid": {"test_token_from_login_validates"},
    # Logout answers 404 only from its handler, which GET never reaches: with login_probe it is proven (matrix).
    "auth_routes_missing": {"test_auth_route_exists[validate]", "test_token_from_login_validates"},
    "validate_accepts_any": {
        "test_tokens_signed_with_default_secrets_are_refused",
        *(
            f"test_validate_rejects_bad_token[{k}]"
            for k in ("missing", "malformed", "expired", "wrong_signature", "alg_none", "alg_confusion")
        ),
    },
    "alg_none_accepted": {"test_validate_rejects_bad_token[alg_none]"},
    "alg_confusion_accepted": {"test_validate_rejects_bad_token[alg_confusion]"},
    "api_500": {"test_api_endpoint_answers_200_with_json[dispensers]"},
    "cors_wildcard": {"test_api_does_not_allow_any_origin_with_credentials"},
    "cors_reflects_origin": {"test_api_does_not_allow_any_origin_with_credentials"},
    "cors_preflight_reflects_origin": {"test_api_does_not_allow_any_origin_with_credentials"},
    # The backend signs with its environment's secret, not the .env's the suite signs with: its token is refused too.
    "weak_secret_in_process_env": {
        "test_tokens_signed_with_default_secrets_are_refused",
        "test_token_from_login_validates",
        "test_api_endpoint_answers_200_with_json[work_orders]",
        "test_api_endpoint_answers_200_with_json[dispensers]",
    },
    "login_accepts_any": set(),  # not probed by default: only wrong_password_probe can tell
}


@pytest.fixture(scope="module")
def sandbox():
    """A live sandbox in the runbook layout, stopped (by pid, in Sandbox.stop) after the module."""
    box = Sandbox(layout="runbook").start()
    try:
        yield box
    finally:
        box.stop()


def failed(run) -> set[str]:
    return {name for name, (outcome, _) in run.cases.items() if outcome in ("failed", "error")}


def test_the_default_probes_pass_a_healthy_sandbox(sandbox, tmp_path):
    targets = sandbox.write_targets(tmp_path / "targets.toml")
    run = run_suite(targets, "live", "-m", "auth or backend", env=DEFAULTS)
    assert_ran_cleanly(run)
    assert failed(run) == set(), run.output[-3000:]
    skipped = {name for name, (outcome, _) in run.cases.items() if outcome == "skipped"}
    assert skipped == {"test_login_with_test_user_succeeds", "test_login_rejects_wrong_password"}


@pytest.mark.parametrize("fault", DEFAULT_MATRIX)
def test_the_default_probes_fail_exactly_the_checks_of_each_auth_fault(sandbox, fault, tmp_path):
    sandbox.inject(fault)
    try:
        targets = sandbox.write_targets(tmp_path / "targets.toml")  # with the fault's thresholds, if any
        run = run_suite(targets, "live", "-m", "auth or backend", env=DEFAULTS)
    finally:
        sandbox.clear(fault)
    assert_ran_cleanly(run)
    assert failed(run) == DEFAULT_MATRIX[fault], run.output[-3000:]


# -- the v2 sandbox: FossaWork V2's own login, database and WorkFossa stand-in ---------------------------------


@pytest.fixture(scope="module")
def v2_sandbox():
    """A live sandbox in FossaWork V2's layout, stopped (by pid, in Sandbox.stop) after the module."""
    box = Sandbox(layout="v2").start()
    try:
        yield box
    finally:
        box.stop()


def v2_rows(box: Sandbox) -> dict[str, dict[str, tuple]]:
    """Every user's row and stored credentials, read without a trace (observe.db.connect_ro)."""
    with closing(connect_ro(box.paths["db"])) as conn:
        users = {row[0]: row for row in conn.execute("SELECT * FROM users ORDER BY id")}
        stored = {row[1]: row for row in conn.execute("SELECT * FROM user_credentials ORDER BY user_id")}
    return {"users": users, "user_credentials": stored}


def v2_run(box: Sandbox, tmp_path: Path, env: dict):
    run = run_suite(box.write_targets(tmp_path / "targets.toml"), "live", "-m", "auth or backend", env=env)
    assert_ran_cleanly(run)
    return run


def test_the_default_probes_leave_every_v2_row_and_workfossa_untouched(v2_sandbox, tmp_path):
    rows, logins = v2_rows(v2_sandbox), v2_sandbox.workfossa_logins()
    run = v2_run(v2_sandbox, tmp_path, DEFAULTS)
    assert {n: o for n, (o, _) in run.cases.items() if o == "failed"} == {}, run.output[-3000:]
    assert v2_rows(v2_sandbox) == rows
    assert v2_sandbox.workfossa_logins() == logins  # not one login reached WorkFossa


def test_the_v2_login_probe_changes_only_the_test_users_rows(v2_sandbox, tmp_path):
    user = seed.user_id_for(TEST_USER)
    before, logins = v2_rows(v2_sandbox), v2_sandbox.workfossa_logins()
    run = v2_run(v2_sandbox, tmp_path, {**DEFAULTS, "FOSSAWORK_LOGIN_PROBE": "true"})
    assert run.outcome("test_login_with_test_user_succeeds") == "passed", run.output[-3000:]
    after = v2_rows(v2_sandbox)
    for table in ("users", "user_credentials"):
        others = set(before[table]) - {user}
        assert others, f"no other user in {table}: the case proves nothing"
        assert {k: after[table][k] for k in others} == {k: before[table][k] for k in others}
        assert after[table][user] != before[table][user]  # last used now; the same credentials, re-encrypted
    assert v2_sandbox.workfossa_logins() == {**logins, "succeeded": logins["succeeded"] + 1}


def test_only_the_wrong_password_probe_costs_a_failed_workfossa_login(v2_sandbox, tmp_path):
    logins = v2_sandbox.workfossa_logins()
    run = v2_run(v2_sandbox, tmp_path, ALL_ON)
    assert run.outcome("test_login_rejects_wrong_password") == "passed", run.output[-3000:]
    assert v2_sandbox.workfossa_logins() == {"succeeded": logins["succeeded"] + 1, "failed": logins["failed"] + 1}
