"""The fault matrix: every health check passes on a healthy sandbox, and each real fault fails exactly its checks.

One sandbox per layout serves the whole matrix: each fault is injected into the running sandbox, the suite
runs against it in a subprocess, and the fault is cleared. What a fault must fail is declared with the fault
(sandbox/faults.py). A check that no fault makes fail is not done (test_every_check_is_proven_by_a_fault),
and a fault that fails a check it should not is a false alarm.
"""

import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from sandbox import FAULTS, Sandbox

ROOT = Path(__file__).resolve().parent.parent

# Checks that run tools on the frontend tree or start a browser: seconds each. They run in the healthy pass
# and for the faults that touch their subject; the other faults cannot reach them (frontend_dir, the browser).
SLOW = (
    "test_frontend_dependencies_are_installed",
    "test_frontend_typescript_compiles",
    "test_frontend_build_succeeds",
    "test_headless_browser_launches",
)
SLOW_FOR = {"frontend", "browser"}

# Checks whose subject is the whole host (its CPU, memory and disk, every browser on it), not the sandbox: they
# follow whatever else the machine is doing. They run in the healthy pass and for the faults that reach the host
# (the thresholds, zombie browsers); a fault in the sandbox's files, routes or processes cannot move them, and a
# busy CI machine failing one there says nothing about that fault.
HOST = (
    "test_system_cpu_is_under_threshold",
    "test_system_memory_is_under_threshold",
    "test_disk_usage_is_under_threshold",
    "test_browser_processes_are_under_maximum",
)
HOST_FOR = {"threshold", "browser"}

# The frontend tree and the browser are the same in both layouts, and threshold faults change the profile only:
# their faults are proven once, in the runbook layout. Every other fault runs in each layout it applies to.
SAME_IN_BOTH_LAYOUTS = {"frontend", "browser", "threshold"}

# Shorter page timeouts keep frontend_hang quick. The API keeps its profile's read timeout: a v2 login waits on
# WorkFossa, and under db_locked on the database's 2 s busy timeout too, and that is slow, not hung.
# The matrix opts into the probes that log in (login_probe, wrong_password_probe: the sandbox's users are
# synthetic and its WorkFossa a stand-in), so every login check is proven here; tests/test_safe_probes.py
# proves the default probes against the auth faults. These belong in the sandbox's generated profile.
ENV = {
    "FOSSAWORK_TIMEOUTS_FRONTEND": "2",
    "FOSSAWORK_TIMEOUTS_WORKFOSSA": "2",
    "FOSSAWORK_LOGIN_PROBE": "true",
    "FOSSAWORK_WRONG_PASSWORD_PROBE": "true",
    "FOSSAWORK_WRONG_PASSWORD_THIRD_PARTY": "true",
}


def run_suite(sandbox: Sandbox, tmp_path: Path, category: str | None = None) -> dict[str, str]:
    """Run the health checks against the sandbox, all of them or those a fault of ``category`` can reach;
    {check name: passed | failed | skipped | error}."""
    junit = tmp_path / "junit.xml"
    args = [
        sys.executable,
        "-m",
        "pytest",
        f"--target-file={sandbox.paths['targets_file']}",
        "--target",
        "live",
        f"--junitxml={junit}",
        "-q",
        "-p",
        "no:randomly",
        "--no-incident-report",
    ]
    unreachable = [
        *(SLOW if category is not None and category not in SLOW_FOR else ()),
        *(HOST if category is not None and category not in HOST_FOR else ()),
    ]
    if unreachable:
        args += ["-k", " and ".join(f"not {name}" for name in unreachable)]
    done = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=240, env={**os.environ, **ENV})
    assert junit.exists(), done.stdout[-2000:] + done.stderr[-2000:]
    outcomes = {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        tags = {child.tag for child in case}
        outcomes[case.get("name")] = (
            "error"
            if "error" in tags
            else "failed"
            if "failure" in tags
            else "skipped"
            if "skipped" in tags
            else "passed"
        )
    return outcomes


def checks_that_failed(outcomes: dict[str, str]) -> set[str]:
    return {name for name, outcome in outcomes.items() if outcome in ("failed", "error")}


@pytest.fixture(scope="module")
def sandbox(request):
    """One running sandbox per layout, shared by every case of that layout."""
    box = Sandbox(layout=request.param).start()
    yield box
    box.stop()


def pytest_generate_tests(metafunc):
    if "fault" in metafunc.fixturenames:
        cases = [
            (layout, name)
            for name, f in FAULTS.items()
            for layout in f.layouts
            if layout == "runbook" or f.category not in SAME_IN_BOTH_LAYOUTS
        ]
        ids = [f"{f}-{layout}" for layout, f in cases]
        metafunc.parametrize(("sandbox", "fault"), cases, indirect=["sandbox"], ids=ids, scope="module")
    elif "sandbox" in metafunc.fixturenames:
        metafunc.parametrize("sandbox", ["runbook", "v2"], indirect=True, scope="module")


def test_the_healthy_sandbox_passes_every_check(sandbox, tmp_path):
    outcomes = run_suite(sandbox, tmp_path)
    assert len(outcomes) >= 60
    assert {n: o for n, o in outcomes.items() if o != "passed"} == {}


def test_each_fault_fails_exactly_its_checks(sandbox, fault, tmp_path):
    sandbox.inject(fault)
    try:
        outcomes = run_suite(sandbox, tmp_path, FAULTS[fault].category)
    finally:
        sandbox.clear(fault)
    expected = FAULTS[fault].must_fail(sandbox.layout)
    assert expected <= outcomes.keys(), "the fault names checks that were not collected"
    assert checks_that_failed(outcomes) == expected


def _collected_checks() -> set[str]:
    collected = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "--target", "local", "--no-incident-report"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    return {line.split("::", 1)[1] for line in collected.splitlines() if line.startswith("health/")}


def test_every_check_is_proven_by_a_fault():
    checks = _collected_checks()
    proven = {check for f in FAULTS.values() for layout in f.layouts for check in f.must_fail(layout)}
    assert checks - proven == set(), "checks without a fault that proves them"
    assert proven - checks == set(), "faults name checks that do not exist"


# The runbook's P1: system down, database corruption, security breach, data loss, authentication failure.
P1_FAULTS = {
    "backend_down",
    "port_taken",
    "api_hang",
    "frontend_down",
    "frontend_not_html",
    "frontend_hang",
    "validate_accepts_any",
    "alg_none_accepted",
    "alg_confusion_accepted",
    "secret_in_bundle",
    "login_accepts_any",
    "jwt_short_secret",
    "jwt_default_secret",
    "weak_secret_in_process_env",  # the running backend signs with a published secret
    # A foreign page can call the API with the user's credentials: a security breach.
    "cors_wildcard",
    "cors_reflects_origin",
    "cors_preflight_reflects_origin",
    "db_world_readable",
    "env_world_readable",
    "credentials_world_readable",
    "db_missing",
    "db_empty",
    "db_not_a_database",
    "db_no_tables",
    "db_corrupt",
    "db_unreadable",
    "login_500",
    "auth_routes_missing",
    "validate_rejects_valid",
    "db_locked",  # the application cannot log anyone in while the database is locked
}
# In FossaWork V2 as deployed, more faults stop every login or the backend itself: P1 there.
P1_FAULTS_V2 = (P1_FAULTS - {"credentials_world_readable"}) | {
    "dev_mode_login",  # any password logs in
    "import_error",  # the backend does not start
    "db_unwritable",  # every login writes
    "db_owned_by_root",  # every login writes, and the backend's account cannot
    "workfossa_down",  # every login goes through WorkFossa
}


@pytest.mark.parametrize("layout, p1_faults", [("runbook", P1_FAULTS), ("v2", P1_FAULTS_V2)])
def test_pytest_m_p1_fails_for_exactly_the_p1_faults(layout, p1_faults):
    catalog = subprocess.run(
        [sys.executable, "-m", "pytest", "--runbook", "--target", "local", "--no-incident-report"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout.splitlines()
    severity = {
        line.split("::", 1)[1]: nxt.split()[0].lower()
        for line, nxt in zip(catalog, catalog[1:], strict=False)
        if line.startswith("health/") and nxt.strip()[:2] in ("P1", "P2", "P3", "P4")
    }
    # A fault makes `pytest -m p1` fail exactly when one of the checks it fails is marked p1.
    p1 = {
        name
        for name, f in FAULTS.items()
        if layout in f.layouts and any(severity.get(c) == "p1" for c in f.must_fail(layout))
    }
    assert p1 == p1_faults
