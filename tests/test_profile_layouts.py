"""A user's own targets file reaches the built-in layouts by ``extends``, and rules checks out as N/A."""

import json
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
