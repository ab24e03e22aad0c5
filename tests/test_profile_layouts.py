"""A user's own targets file reaches the built-in layouts by ``extends``, and rules checks out as N/A."""

import json
import os
import pwd
import subprocess
import sys
from pathlib import Path

import pytest

from observe import profile
from observe.browser import MANAGED, launch
from sandbox import Sandbox

ROOT = Path(__file__).resolve().parent.parent


def test_a_targets_file_outside_the_checkout_extends_a_built_in_layout(tmp_path):
    mine = tmp_path / "targets.toml"
    mine.write_text('[prod]\nextends = "local-v2"\napi_url = "http://127.0.0.1:8001"\n')
    resolved = profile.resolve(mine, "prod", environ={})
    assert resolved.api_url == "http://127.0.0.1:8001"
    assert resolved.endpoints.health == "/health"  # from the built-in local-v2
    assert resolved.automation.table == "automation_jobs"


def test_a_not_applicable_entry_without_a_reason_is_a_profile_error(tmp_path):
    mine = tmp_path / "targets.toml"
    mine.write_text('[prod]\nnot_applicable = ["test_api_latency_is_under_threshold"]\n')
    with pytest.raises(profile.ProfileError, match="not_applicable: expected 'check name or glob: reason'"):
        profile.resolve(mine, "prod", environ={})


def test_a_check_ruled_out_by_the_profile_is_na_with_its_reason_in_terminal_json_and_html(tmp_path):
    reason = "no latency objective for this deployment"
    with Sandbox(layout="runbook") as sandbox:
        live = Path(sandbox.paths["targets_file"]).read_text()
        mine = tmp_path / "mine.toml"
        mine.write_text(
            live + f'\n[mine]\nextends = "live"\nnot_applicable = ["test_api_latency_is_under_threshold: {reason}"]\n'
        )
        argv = [sys.executable, "-m", "pytest", "health/test_performance.py", "--target-file", str(mine)]
        argv += ["--target", "mine", "--report-dir", str(tmp_path / "reports"), "-q", "-rs", "-p", "no:cacheprovider"]
        done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=300)
    incident = json.loads((tmp_path / "reports/latest.json").read_text())
    na = incident["not_applicable"]
    assert [n["id"] for n in na] == ["health/test_performance.py::test_api_latency_is_under_threshold"], done.stdout
    assert na[0]["reason"].startswith(f"N/A: {reason}")
    assert f"N/A health/test_performance.py::test_api_latency_is_under_threshold: N/A: {reason}" in done.stdout
    html = (tmp_path / "reports/latest.html").read_text()
    assert "Not applicable (N/A)" in html and reason in html


def test_the_applications_own_playwright_browser_is_the_one_launched(tmp_path, monkeypatch):
    # The application's environment has no Playwright browser installed: the launch says where it looked.
    monkeypatch.setenv("PLAYWRIGHT_BROWSERS_PATH", str(tmp_path / "ms-playwright"))
    result = launch(MANAGED, timeout=20)
    assert not result.ok
    assert str(tmp_path / "ms-playwright") in result.detail and "doesn't exist" in result.detail


# What a deployment's own profile names on top of the shipped local-v2: where things are, where they answer, and
# the account the backend runs as. Everything else (routes, log layout, tables, timeouts) must come from the preset.
WHERE_THINGS_ARE = (
    "api_url",
    "frontend_url",
    "workfossa_url",
    "db_path",
    "backup_dir",
    "log_dir",
    "frontend_dir",
    "frontend_cwd",
    "env_file",
    "backend_cwd",
    "backend_output",
    "pid_dir",
    "disk_path",
    "browser_executable",
)
# Opt-ins that write, off by default (README): not probed is their honest verdict on a profile that leaves them off.
OPT_IN = {"test_login_with_test_user_succeeds", "test_login_rejects_wrong_password"}


def test_the_v2_preset_with_only_paths_ports_and_the_service_user_finds_a_healthy_v2_sandbox_healthy(tmp_path):
    with Sandbox(layout="v2") as sandbox:
        values = sandbox.profile_values()
        mine = {"extends": "local-v2", **{key: values[key] for key in WHERE_THINGS_ARE}}
        mine["service_user"] = sandbox.backend_user.get("name") or pwd.getpwuid(os.getuid()).pw_name
        (tmp_path / "targets.toml").write_text(profile.dump("prod", mine))
        outcomes = tmp_path / "outcomes.json"
        argv = [sys.executable, "-m", "pytest", "health", "--target-file", str(tmp_path / "targets.toml")]
        argv += ["--target", "prod", "--report-dir", str(tmp_path / "reports"), "-q", "-rs", "-p", "no:cacheprovider"]
        argv += ["--recheck-result", str(outcomes)]
        done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=600)
    by_name = {nodeid.split("::")[-1]: outcome for nodeid, outcome in json.loads(outcomes.read_text()).items()}
    assert done.returncode == 0, done.stdout[-4000:]
    assert not [n for n, o in by_name.items() if o == "failed"], done.stdout[-4000:]
    # Every check observed something and passed, but the opt-ins that write.
    skipped = {n for n, o in by_name.items() if o != "passed"}
    assert skipped == OPT_IN, done.stdout[-4000:]
