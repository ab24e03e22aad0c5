"""A fixture that cannot observe fails only the checks that need it, with its reason; the run goes on."""

from __future__ import annotations

import os
import time

from hostile_servers import ROOT, assert_ran_cleanly, offline_profile, run_suite, write_targets

from observe.browser import launch

# Loaded into the inner run with -p: the process table cannot be listed, as in a container without /proc access.
BREAK_PSUTIL = """
import psutil


def pytest_configure(config):
    def denied(*args, **kwargs):
        raise psutil.AccessDenied(pid=1, msg="process table not readable")

    psutil.process_iter = denied
"""

# The checks that request the ``processes`` fixture.
NEEDS_PROCESSES = ("test_backend_process", "test_api_port_is_held", "test_service_is_active", "test_browser_processes")


def test_a_process_table_that_cannot_be_read_fails_only_the_process_checks(tmp_path):
    (tmp_path / "break_psutil.py").write_text(BREAK_PSUTIL)
    targets = write_targets(tmp_path / "t.toml", "t", offline_profile(tmp_path))
    pythonpath = os.pathsep.join(filter(None, [str(tmp_path), str(ROOT), os.environ.get("PYTHONPATH")]))
    run = run_suite(
        targets,
        "t",
        "-p",
        "break_psutil",
        "-m",
        "backend or performance or automation",
        "-k",
        "process or service or port or system or disk",
        env={"PYTHONPATH": pythonpath},
    )
    assert run.returncode == 1, run.output[-3000:]
    assert "Traceback" not in run.output and "INTERNALERROR" not in run.output, run.output[-3000:]
    needs_processes = [name for name in run.cases if name.startswith(NEEDS_PROCESSES)]
    assert needs_processes
    for name in needs_processes:
        outcome, message = run.cases[name]
        # pytest reports a fixture's failure as an error at setup of each check that requested it.
        assert outcome in ("failed", "error") and "cannot list processes" in message, (name, outcome, message)
    others = {name: case for name, case in run.cases.items() if name not in needs_processes}
    assert others["test_system_cpu_is_under_threshold"][0] in ("passed", "failed")
    assert others["test_disk_usage_is_under_threshold"][0] in ("passed", "failed")
    assert not [name for name, (outcome, msg) in others.items() if "cannot list processes" in msg]


def test_a_non_executable_browser_is_a_failed_launch(tmp_path):
    binary = tmp_path / "chromium"
    binary.write_text("not a browser")
    binary.chmod(0o644)
    result = launch(str(binary), timeout=5)
    assert not result.ok and "not executable" in result.detail


def test_a_browser_that_exits_at_once_is_a_failed_launch_within_its_timeout(tmp_path):
    binary = tmp_path / "chromium"
    binary.write_text("#!/bin/sh\necho 'chromium: cannot open display' >&2\nexit 1\n")
    binary.chmod(0o755)
    start = time.monotonic()
    result = launch(str(binary), timeout=5)
    assert time.monotonic() - start < 5 + 5 + 1
    assert not result.ok and "\n" not in result.detail and result.detail


def test_a_run_with_a_broken_browser_fails_that_check_and_goes_on(tmp_path):
    binary = tmp_path / "chromium"
    binary.write_text("not a browser")
    binary.chmod(0o644)
    targets = write_targets(tmp_path / "t.toml", "t", offline_profile(tmp_path, browser_executable=str(binary)))
    run = run_suite(targets, "t", "-m", "automation or database")
    assert_ran_cleanly(run)
    outcome, message = run.cases["test_headless_browser_launches"]
    assert outcome == "failed" and "not executable" in message and str(binary) in message, message
    assert run.outcome("test_database_file_exists") == "failed"  # the run went on past the browser
