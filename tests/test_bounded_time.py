"""Never hang: every probe of a broken target returns within its timeouts and names the cause.

The servers are the misbehaving ones of ``hostile_servers``; each is stopped by
its own ``stop()`` when the test ends. A whole-suite run against a hung target
must finish within one read timeout plus start-up, not one timeout per check.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hostile_servers import ROOT, HostileServer, junit_cases, offline_profile, run_suite, write_targets

from observe.db import Database, DatabaseLocked
from observe.http import MAX_BODY, Http
from observe.profile import resolve

CONNECT, READ = 0.5, 1.0
BOUND = CONNECT + 2 * READ + 0.5  # the documented bound of Http.request, plus slack for a loaded CI machine


@pytest.fixture
def http():
    client = Http(CONNECT, READ)
    yield client
    client.close()


@pytest.mark.parametrize(
    ("behaviour", "kind", "words"),
    [
        pytest.param("hang", "timeout", "timeout", id="accepts-and-never-answers"),
        pytest.param("drip", "timeout", "timeout", id="a-byte-every-half-second"),
        pytest.param("chunked_drip", "timeout", "timeout", id="chunked-byte-every-half-second"),
        pytest.param("slow_headers", "timeout", "timeout", id="headers-that-never-end"),
        pytest.param("redirect_loop", "redirects", "redirect loop", id="redirect-loop"),
        pytest.param("tls", "tls", "certificate verify failed", id="self-signed-certificate"),
    ],
)
def test_a_broken_server_costs_at_most_connect_plus_two_reads(http, tmp_path, behaviour, kind, words):
    with HostileServer(behaviour, certdir=tmp_path) as server:
        start = time.monotonic()
        answer = http.request("GET", server.url + "/api/health")
        elapsed = time.monotonic() - start
    assert elapsed < BOUND, f"{behaviour}: took {elapsed:.2f} s"
    assert (answer.kind, answer.ok) == (kind, False), answer.describe()
    assert words in answer.error
    assert len(answer.body) <= MAX_BODY
    assert words in answer.describe() and "\n" not in answer.describe()


def test_a_one_gigabyte_body_is_cut_at_max_body(http):
    with HostileServer("huge") as server:
        start = time.monotonic()
        answer = http.request("GET", server.url + "/")
        elapsed = time.monotonic() - start
    assert elapsed < BOUND
    assert (answer.status, answer.truncated, len(answer.body)) == (200, True, MAX_BODY)
    assert answer.json() == (None, f"body larger than {MAX_BODY} bytes")


def test_a_dripping_body_is_reported_as_a_truncated_timeout(http):
    with HostileServer("chunked_drip", interval=0.2) as server:
        answer = http.request("GET", server.url + "/")
    assert (answer.status, answer.truncated, answer.kind) == (200, True, "timeout")
    assert answer.json()[1].startswith("timeout")


def test_verify_tls_false_accepts_a_self_signed_certificate(tmp_path, monkeypatch):
    # A CA bundle in the environment must not switch verification back on (requests merges it over session.verify).
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")
    targets = write_targets(tmp_path / "t.toml", "insecure", {"verify_tls": False})
    profile = resolve(targets, "insecure", environ={})
    client = Http(profile.timeouts.connect, profile.timeouts.read, profile.verify_tls)
    try:
        with HostileServer("tls", certdir=tmp_path) as server, pytest.warns(Warning):
            answer = client.request("GET", server.url + "/")
    finally:
        client.close()
    assert (answer.status, answer.error, answer.body) == (200, None, b"{}")


# -- the database under another process's lock ------------------------------------------------------

HOLDER = """
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN EXCLUSIVE")
conn.execute("INSERT INTO t VALUES (2)")
print("locked", flush=True)
sys.stdin.readline()  # held until the test closes our stdin (or 30 s pass)
"""


@pytest.fixture
def locked_db(tmp_path):
    """A SQLite file under an EXCLUSIVE lock held by a child process, which is stopped by pid afterwards."""
    path = tmp_path / "locked.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE t (x)")
        conn.execute("INSERT INTO t VALUES (1)")
    conn.close()
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        yield path, holder.pid
    finally:
        holder.stdin.close()
        try:
            holder.wait(timeout=5)
        except subprocess.TimeoutExpired:
            holder.kill()
            holder.wait(timeout=5)


def _database(tmp_path: Path, db_path: Path, lock: float) -> Database:
    targets = write_targets(tmp_path / "db.toml", "db", {"db_path": str(db_path), "timeouts": {"lock": lock}})
    return Database(resolve(targets, "db", environ={}))


def test_lock_holder_names_the_pid_within_the_lock_timeout(tmp_path, locked_db):
    path, pid = locked_db
    database = _database(tmp_path, path, lock=0.5)
    start = time.monotonic()
    holder = database.lock_holder()
    elapsed = time.monotonic() - start
    assert elapsed < 0.5 + 0.5
    assert holder is not None and (holder.pid, holder.lock) == (pid, "EXCLUSIVE")


def test_a_query_on_a_locked_database_raises_database_locked_within_the_lock_timeout(tmp_path, locked_db):
    path, _ = locked_db
    database = _database(tmp_path, path, lock=0.5)
    start = time.monotonic()
    try:
        with pytest.raises(DatabaseLocked, match="locked"):
            database.query("SELECT COUNT(*) FROM t")
    finally:
        database.close()
    assert time.monotonic() - start < 0.5 + 1.0


# -- the whole suite against a hung target --------------------------------------------------------


def test_a_p1_run_against_a_hung_target_finishes_within_one_read_timeout(tmp_path):
    with HostileServer("hang") as server:
        targets = write_targets(tmp_path / "targets.toml", "hung", offline_profile(tmp_path, server.url))
        # With every probe that logs in: they run one after another, and still cost no timeout of their own.
        opt_ins = ("LOGIN_PROBE", "WRONG_PASSWORD_PROBE", "WRONG_PASSWORD_THIRD_PARTY")
        env = {"FOSSAWORK_TEST_PASSWORD": "not-the-real-one", **{f"FOSSAWORK_{key}": "true" for key in opt_ins}}
        run = run_suite(targets, "hung", "-m", "p1", env=env)
    # One read timeout for the gathered API probes, one for the frontend page, plus interpreter start-up.
    assert run.elapsed < 1.0 * 2 + 8, run.output[-2000:]
    assert run.returncode == 1, run.output[-3000:]
    assert "Traceback" not in run.output and "INTERNALERROR" not in run.output
    api_checks = {
        "test_api_endpoint_answers_200_with_json[health]",
        "test_login_with_test_user_succeeds",
        "test_auth_route_exists[login]",
        "test_frontend_page_answers_200_with_html",
    }
    for name in api_checks:
        outcome, message = run.cases[name]
        assert outcome == "failed" and "timeout" in message, (name, outcome, message)
    assert not [name for name, (outcome, _) in run.cases.items() if outcome == "error"], run.output[-3000:]


# -- a DNS server that never answers ----------------------------------------------------------------

# Runs as root of fresh user, mount and network namespaces (unshare): brings up their own loopback, binds a
# resolv.conf naming 127.0.0.1 over /etc/resolv.conf (only in this mount namespace) and serves port 53 with
# sockets that take every query and answer none. The host's resolver configuration is never touched.
SILENT_DNS = """
import json, os, socket, subprocess, sys, threading, time
tmp, root, connect, read, mode = sys.argv[1:6]
subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
with open(os.path.join(tmp, "resolv.conf"), "w") as conf:
    conf.write("nameserver 127.0.0.1\\noptions timeout:5 attempts:2\\n")
subprocess.run(["mount", "--bind", os.path.join(tmp, "resolv.conf"), "/etc/resolv.conf"], check=True)
udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
udp.bind(("127.0.0.1", 53))
tcp = socket.socket()
tcp.bind(("127.0.0.1", 53))
tcp.listen()
threading.Thread(target=lambda: [udp.recvfrom(512) for _ in iter(int, 1)], daemon=True).start()
lookup = threading.Thread(target=socket.getaddrinfo, args=("fossawork.example", 8000), daemon=True)
start = time.monotonic()
lookup.start()
lookup.join(2.0)
out = {"resolver_silent_for": time.monotonic() - start if lookup.is_alive() else 0.0}
if mode == "request":
    sys.path.insert(0, root)
    from observe.http import Http
    http = Http(float(connect), float(read))
    start = time.monotonic()
    answer = http.request("GET", "http://fossawork.example:8000/health")
    out.update(elapsed=time.monotonic() - start, kind=answer.kind, error=answer.error)
else:
    env = {**os.environ, "PYTHONPATH": root}
    done = subprocess.run([sys.executable, "-m", "pytest", *sys.argv[6:]], cwd=root, env=env, capture_output=True,
                          text=True, timeout=60)
    out.update(returncode=done.returncode, output=(done.stdout + done.stderr)[-3000:])
print(json.dumps(out))
"""


def in_silent_dns_namespace(tmp_path: Path, mode: str, *pytest_args: str) -> dict:
    """Run SILENT_DNS in its namespaces; every process it starts ends with it (its network has no way out)."""
    done = subprocess.run(
        ["unshare", "--user", "--map-root-user", "--mount", "--net", sys.executable, "-c", SILENT_DNS]
        + [str(tmp_path), str(ROOT), str(CONNECT), str(READ), mode, *pytest_args],
        capture_output=True,
        text=True,
        timeout=90,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.splitlines()[-1])


def test_a_dns_server_that_never_answers_costs_at_most_connect_plus_two_reads(tmp_path):
    seen = in_silent_dns_namespace(tmp_path, "request")
    assert seen["resolver_silent_for"] >= 2.0, "the resolver answered: the case is not a silent DNS server"
    assert seen["elapsed"] < BOUND, f"took {seen['elapsed']:.2f} s"
    assert (seen["kind"], seen["error"]) == (
        "timeout",
        f"timeout: no DNS answer for fossawork.example within {CONNECT:g} s",
    )


def test_a_p1_run_with_a_silent_dns_server_finishes_within_one_read_timeout(tmp_path):
    targets = write_targets(
        tmp_path / "targets.toml", "dns", offline_profile(tmp_path, "http://fossawork.example:8000")
    )
    junit = tmp_path / "junit.xml"
    args = (f"--target-file={targets}", "--target=dns", "-m", "p1", "-q", "-p", "no:cacheprovider")
    start = time.monotonic()
    seen = in_silent_dns_namespace(tmp_path, "suite", *args, "--no-incident-report", f"--junitxml={junit}")
    elapsed = time.monotonic() - start
    assert seen["resolver_silent_for"] >= 2.0
    # As for a hung API: one connect timeout for the gathered probes, one for the frontend page, plus start-up.
    assert elapsed < 1.0 * 2 + 8, seen["output"]
    assert seen["returncode"] == 1 and "Traceback" not in seen["output"], seen["output"]
    outcome, message = junit_cases(junit)["test_api_endpoint_answers_200_with_json[health]"]
    assert outcome == "failed" and "no DNS answer for fossawork.example" in message, message
