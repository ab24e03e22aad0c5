"""Never hang: a FIFO, a socket or a device where the profile names a file gives a one-line failure at once.

Reading a FIFO waits for a writer that never comes and a device like /dev/zero never ends, so before these
tests the suite hung in pytest_sessionstart (env_file), in every database check until pytest-timeout (db_path),
and fix scripts held the target's lock while they waited (pid files, env_file). Every case here is a real
special file; each run must finish within BOUND, which is start-up plus the 1 s timeouts of the profile.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
from hostile_servers import ROOT, HostileServer, assert_ran_cleanly, offline_profile, run_suite, write_targets

from observe import secrets
from observe.frontend import Frontend
from observe.logs import Logs
from observe.profile import resolve

BOUND = 30.0  # seconds for a whole inner run under load; a wait on a FIFO is forever, pytest-timeout 120 s
# The inner runs load every plugin of the suite (the incident recorder's pytest_sessionstart reads env_file).
PLUGINS_ON = ("-p", "no:cacheprovider", "-q", "-rfEs", "--no-incident-report")
KINDS = {"fifo": "FIFO", "socket": "socket", "device": "character device"}


def special_file(path: Path, kind: str) -> Path:
    """A FIFO, a Unix socket or (a symlink to) /dev/zero at ``path``: files no reader may wait on."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "socket":
        with socket.socket(socket.AF_UNIX) as sock:
            sock.bind(str(path))  # the socket file stays after close: nobody listens, opening it fails
    else:
        path.symlink_to("/dev/zero")
    return path


@pytest.mark.parametrize("kind", KINDS)
def test_an_env_file_that_is_not_a_file_fails_the_secret_check_in_one_line(tmp_path, kind):
    env_file = special_file(tmp_path / "backend" / ".env", kind)
    targets = write_targets(tmp_path / "t.toml", "t", offline_profile(tmp_path, env_file=str(env_file)))
    run = run_suite(targets, "t", "-m", "auth", opts=PLUGINS_ON, env={"SECRET_KEY": "", "FOSSAWORK_TEST_PASSWORD": ""})
    assert run.elapsed < BOUND, f"took {run.elapsed:.1f} s"
    assert_ran_cleanly(run)
    outcome, message = run.cases["test_jwt_secret_is_at_least_32_characters"]
    assert outcome == "failed" and f"{env_file} is a {KINDS[kind]}" in message, message


@pytest.mark.parametrize("kind", KINDS)
def test_a_pid_file_that_is_not_a_file_fails_the_service_check_in_one_line(tmp_path, kind):
    special_file(tmp_path / "run" / "backend.pid", kind)
    targets = write_targets(tmp_path / "t.toml", "t", offline_profile(tmp_path))
    run = run_suite(targets, "t", "-k", "test_service_is_active", opts=PLUGINS_ON)
    assert run.elapsed < BOUND, f"took {run.elapsed:.1f} s"
    assert_ran_cleanly(run)
    assert run.outcome("test_service_is_active[backend]") == "failed"


@pytest.mark.parametrize("kind", KINDS)
def test_a_fix_script_reading_special_files_finishes_at_once(tmp_path, kind):
    special_file(tmp_path / "run" / "backend.pid", kind)
    env_file = special_file(tmp_path / ".env", kind)
    database = special_file(tmp_path / "fossawork_v2.db", kind)
    values = offline_profile(tmp_path, env_file=str(env_file), db_path=str(database))
    targets = write_targets(tmp_path / "t.toml", "t", values)
    outputs = []
    for script, issue in (("fix_backend_issues", "api_errors"), ("fix_database_issues", "vacuum")):
        start = time.monotonic()
        done = subprocess.run(
            [sys.executable, "-m", f"remediation.scripts.{script}", issue, f"--target-file={targets}", "--target=t"]
            + [f"--report-dir={tmp_path / 'reports'}"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=BOUND * 2,
            stdin=subprocess.DEVNULL,
        )
        elapsed = time.monotonic() - start
        outputs.append(done.stdout + done.stderr)
        assert elapsed < BOUND, f"{script} took {elapsed:.1f} s"
        assert "Traceback" not in done.stdout + done.stderr, done.stdout + done.stderr
    assert f"{database} is a {KINDS[kind]}" in outputs[1], outputs[1]


@pytest.mark.parametrize("kind", KINDS)
def test_a_log_that_is_not_a_file_is_skipped_and_named(tmp_path, kind):
    special_file(tmp_path / "logs" / "errors" / "backend-errors-latest.jsonl", kind)
    values = offline_profile(tmp_path, logs={"backend_errors": ["errors/*.jsonl"]})
    targets = write_targets(tmp_path / "t.toml", "t", values)
    start = time.monotonic()
    tail = Logs(resolve(targets, "t", environ={})).since("errors", timedelta(hours=1))
    assert time.monotonic() - start < 1.0
    assert tail.files == [] and tail.problems == [
        f"skipped backend-errors-latest.jsonl: a {KINDS[kind]}, not a regular file"
    ]
    run = run_suite(targets, "t", "-k", "test_backend_error_log_exists", opts=PLUGINS_ON)
    assert run.elapsed < BOUND
    outcome, message = run.cases["test_backend_error_log_exists"]
    assert outcome == "failed" and f"a {KINDS[kind]}, not a regular file" in message, message


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    ("tool", "name"), [("npm_ls", "package.json"), ("tsc", "tsconfig.json"), ("build", "package.json")]
)
def test_a_frontend_file_that_is_not_a_file_fails_its_tool_at_once(tmp_path, kind, tool, name):
    frontend = tmp_path / "frontend"
    special_file(frontend / name, kind)
    tsc = frontend / "node_modules" / ".bin" / "tsc"  # present, so tsc gets as far as its tsconfig.json
    tsc.parent.mkdir(parents=True)
    tsc.write_text("#!/bin/sh\nexec cat tsconfig.json\n")
    tsc.chmod(0o755)
    targets = write_targets(tmp_path / "t.toml", "t", offline_profile(tmp_path, frontend_dir=str(frontend)))
    tools = Frontend(resolve(targets, "t", environ={}))
    try:
        start = time.monotonic()
        run = getattr(tools, tool)()
        elapsed = time.monotonic() - start
    finally:
        tools.close()
    assert elapsed < 1.0
    assert run.returncode is None and run.problem == f"{frontend / name} is a {KINDS[kind]}, not a regular file"


@pytest.mark.parametrize("kind", KINDS)
def test_a_targets_file_that_is_not_a_file_is_exit_4_with_one_line(tmp_path, kind):
    targets = special_file(tmp_path / "targets.toml", kind)
    start = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "pytest", f"--target-file={targets}", "--collect-only", "-q", *PLUGINS_ON],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=BOUND * 2,
        stdin=subprocess.DEVNULL,
    )
    assert time.monotonic() - start < BOUND
    errors = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 4
    assert errors == [f"ERROR: {targets} is a {KINDS[kind]}, not a regular file, expected a TOML targets file"]


def test_a_password_in_a_url_appears_in_no_output_and_no_report(tmp_path):
    password = "url-pass-0123456789"
    with HostileServer("answer", status=500, body=b'{"detail": "boom"}') as server:
        url = server.url.replace("http://", f"http://operator:{password}@")
        values = offline_profile(tmp_path, url, workfossa_url=url.replace(password, "w0rkf0ssa-" + password))
        targets = write_targets(tmp_path / "t.toml", "t", values)
        reports = tmp_path / "reports"
        run = run_suite(targets, "t", "-m", "p1", f"--report-dir={reports}", opts=PLUGINS_ON[:-1])
    assert_ran_cleanly(run)
    assert "http://[REDACTED]@127.0.0.1" in run.output, run.output[-3000:]
    written = [reports / "latest.json", reports / "latest.html", tmp_path / "t.junit.xml"]
    for text in [run.output, *(path.read_text() for path in written)]:
        assert password not in text


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("GET http://ops:pa55word@h:8000/health -> 500", "GET http://[REDACTED]@h:8000/health -> 500"),
        ("https://ghp_token123@git.example/x", "https://[REDACTED]@git.example/x"),
        (
            "http://h/cb?token=abc&user_id=7&api_key=zz#top",
            "http://h/cb?token=[REDACTED]&user_id=7&api_key=[REDACTED]#top",
        ),
        ("https://h/hook?sig=0123&x=1", "https://h/hook?sig=[REDACTED]&x=1"),
        ("http://h/path@not-user-info", "http://h/path@not-user-info"),
    ],
)
def test_credentials_in_urls_are_masked_by_their_form(text, shown):
    assert secrets.redact(text) == shown
