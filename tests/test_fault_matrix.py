"""The fault matrix: every health check passes on a healthy sandbox, and each real fault fails exactly its checks.

One sandbox per layout serves the whole matrix: each fault is injected into the running sandbox, the suite
runs against it in a subprocess, and the fault is cleared. A check that no fault here makes fail is not done
(test_every_check_is_proven_by_a_fault), and a fault that fails a check it should not is a false alarm.
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

LOGIN_DOWN = {"test_auth_route_exists[login]", "test_login_with_test_user_succeeds"}
FRONTEND_DOWN = {
    "test_frontend_page_answers_200_with_html",
    "test_frontend_dev_server_is_running",
    "test_service_is_active[frontend]",
}
BAD_TOKENS = {
    f"test_validate_rejects_bad_token[{k}]"
    for k in ("missing", "malformed", "expired", "wrong_signature", "alg_none", "alg_confusion")
}

# fault -> the checks it must fail (the same in both layouts unless MATRIX_V2 says otherwise).
MATRIX = {
    "backend_down": LOGIN_DOWN
    | {
        "test_api_endpoint_answers_200_with_json[health]",
        "test_backend_process_is_running",
        "test_service_is_active[backend]",
    },
    "backend_duplicate": {"test_backend_process_is_not_duplicated"},
    "port_taken": LOGIN_DOWN
    | {
        "test_api_endpoint_answers_200_with_json[health]",
        "test_backend_process_is_running",
        "test_api_port_is_held_by_the_backend",
        "test_service_is_active[backend]",
    },
    "backend_cpu_burn": {"test_backend_process_cpu_is_under_threshold"},
    "api_500": {"test_api_endpoint_answers_200_with_json[dispensers]"},
    "api_hang": LOGIN_DOWN | {"test_api_endpoint_answers_200_with_json[health]"},
    "api_slow": {"test_api_latency_is_under_threshold"},
    "validate_accepts_any": BAD_TOKENS,
    "alg_none_accepted": {"test_validate_rejects_bad_token[alg_none]"},
    "alg_confusion_accepted": {"test_validate_rejects_bad_token[alg_confusion]"},
    "login_500": LOGIN_DOWN,
    "auth_routes_missing": {
        "test_auth_route_exists[validate]",
        "test_auth_route_exists[logout]",
        "test_token_from_login_validates",
    },
    "validate_rejects_valid": {"test_token_from_login_validates"},
    "login_accepts_any": {"test_login_rejects_wrong_password"},
    "cors_wildcard": {"test_api_does_not_allow_any_origin_with_credentials"},
    "jwt_short_secret": {"test_jwt_secret_is_at_least_32_characters"},
    "jwt_default_secret": {"test_jwt_secret_is_not_a_known_default"},
    # The application reads its users from the database: a broken database is also a broken login.
    "db_missing": LOGIN_DOWN | {"test_database_file_exists"},
    "db_empty": LOGIN_DOWN | {"test_database_file_is_not_empty"},
    "db_not_a_database": LOGIN_DOWN
    | {
        "test_database_is_a_readable_sqlite_database",
        "test_backend_error_log_has_no_critical_error_pattern[DatabaseError]",
    },
    "db_no_tables": LOGIN_DOWN | {"test_database_has_expected_tables"},
    "db_corrupt": {
        "test_database_passes_quick_check",
        "test_database_passes_integrity_check",
        "test_database_foreign_keys_are_consistent",
        "test_api_endpoint_answers_200_with_json[work_orders]",
        "test_backend_error_log_has_no_critical_error_pattern[DatabaseError]",
    },
    "db_fk_violation": {"test_database_foreign_keys_are_consistent"},
    "db_locked": LOGIN_DOWN | {"test_database_is_not_locked"},
    "db_bloated": {"test_database_free_pages_are_under_ratio"},
    "db_unreadable": {"test_database_file_is_readable"},
    "db_unwritable": {"test_database_file_is_writable"},
    "db_world_readable": {"test_secret_files_are_not_readable_by_others"},
    "env_world_readable": {"test_secret_files_are_not_readable_by_others"},
    "credentials_missing": {"test_credential_store_holds_credentials"},
    "credentials_world_readable": {"test_secret_files_are_not_readable_by_others"},
    "error_burst": {"test_error_logs_hold_few_errors_in_the_last_hour"},
    "backend_error_burst": {"test_backend_error_log_has_few_recent_errors"},
    "critical_error_pattern": {
        f"test_backend_error_log_has_no_critical_error_pattern[{p}]"
        for p in ("ConnectionError", "DatabaseError", "TimeoutError", "MemoryError")
    },
    "import_error": {"test_backend_logs_show_no_import_errors"},
    "backend_log_missing": {"test_backend_error_log_exists"},
    "log_oversized": {"test_log_files_are_under_size_limit"},
    "automation_failure_30": {"test_automation_failure_rate_is_under_threshold"},
    "automation_failure_60": {
        "test_automation_failure_rate_is_under_threshold",
        "test_automation_failure_rate_is_not_critical",
    },
    "automation_logs_stale": {"test_automation_logs_are_recent"},
    "frontend_down": FRONTEND_DOWN,
    "frontend_not_html": FRONTEND_DOWN,
    "frontend_hang": FRONTEND_DOWN,
    "frontend_duplicate": {"test_frontend_dev_server_is_not_duplicated"},
    "node_modules_missing": {
        "test_frontend_dependencies_are_installed",
        "test_frontend_typescript_compiles",
        "test_frontend_build_succeeds",
    },
    # The build script runs vite (removed here) and tsc (broken here): the build fails with them.
    "npm_missing_dependency": {"test_frontend_dependencies_are_installed", "test_frontend_build_succeeds"},
    "ts_error": {"test_frontend_typescript_compiles", "test_frontend_build_succeeds"},
    "build_broken": {"test_frontend_build_succeeds"},
    "secret_in_bundle": {"test_frontend_bundle_contains_no_secret"},
    "workfossa_down": {"test_workfossa_site_answers"},
    "browser_broken": {"test_headless_browser_launches"},
    "browser_zombies": {"test_browser_processes_are_under_maximum"},
    "cpu_threshold": {"test_system_cpu_is_under_threshold"},
    "memory_threshold": {"test_system_memory_is_under_threshold"},
    "disk_threshold": {"test_disk_usage_is_under_threshold"},
    "process_memory_threshold": {"test_backend_process_memory_is_under_threshold"},
    "db_size_threshold": {"test_database_file_is_under_size_limit"},
    "large_table_threshold": {"test_database_tables_are_under_large_table_rows"},
    "slow_query_threshold": {
        "test_database_counts_rows_quickly[work_orders]",
        "test_database_counts_rows_quickly[dispensers]",
    },
}

# In FossaWork V2's real layout the faults that differ from the runbook's layout: routes, log formats and
# files, credentials in a table. The rest of the matrix is layout-independent and runs once, above.
V2_FAULTS = [
    "backend_down",
    "api_500",
    "validate_accepts_any",
    "login_500",
    "db_corrupt",
    "db_missing",
    "credentials_missing",
    "auth_routes_missing",
    "error_burst",
    "backend_error_burst",
    "critical_error_pattern",
    "import_error",
    "backend_log_missing",
    "automation_failure_30",
    "automation_failure_60",
    "automation_logs_stale",
]

# Shorter page timeouts keep frontend_hang quick. The API keeps the runbook's 5 s: under db_locked the
# application serialises requests behind its 2 s busy timeout, and that is slow, not hung.
ENV = {"FOSSAWORK_TIMEOUTS_FRONTEND": "2", "FOSSAWORK_TIMEOUTS_WORKFOSSA": "2"}


def run_suite(sandbox: Sandbox, tmp_path: Path, with_slow: bool) -> dict[str, str]:
    """Run every health check against the sandbox; {check name: passed | failed | skipped | error}."""
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
    if not with_slow:
        args += ["-k", " and ".join(f"not {name}" for name in SLOW)]
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
        # Every fault in the runbook layout; in FossaWork V2's layout, the faults whose checks read it differently.
        cases = [("runbook", f) for f in MATRIX] + [("v2", f) for f in V2_FAULTS]
        cases = [(layout, f) for layout, f in cases if layout in FAULTS[f].layouts]
        ids = [f"{f}-{layout}" for layout, f in cases]
        metafunc.parametrize(("sandbox", "fault"), cases, indirect=["sandbox"], ids=ids, scope="module")
    elif "sandbox" in metafunc.fixturenames:
        metafunc.parametrize("sandbox", ["runbook", "v2"], indirect=True, scope="module")


def test_the_healthy_sandbox_passes_every_check(sandbox, tmp_path):
    outcomes = run_suite(sandbox, tmp_path, with_slow=True)
    assert len(outcomes) >= 60
    assert {n: o for n, o in outcomes.items() if o != "passed"} == {}


def test_each_fault_fails_exactly_its_checks(sandbox, fault, tmp_path):
    sandbox.inject(fault)
    try:
        outcomes = run_suite(sandbox, tmp_path, with_slow=FAULTS[fault].category in SLOW_FOR)
    finally:
        sandbox.clear(fault)
    assert checks_that_failed(outcomes) == MATRIX[fault]


def test_every_check_is_proven_by_a_fault():
    collected = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "--target", "local", "--no-incident-report"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    checks = {line.split("::", 1)[1] for line in collected.splitlines() if line.startswith("health/")}
    proven = set().union(*MATRIX.values())
    assert checks - proven == set(), "checks without a fault that proves them"
    assert proven - checks == set(), "the matrix names checks that do not exist"


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


def test_pytest_m_p1_fails_for_exactly_the_p1_faults():
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
    p1 = {fault for fault, checks in MATRIX.items() if any(severity[c] == "p1" for c in checks)}
    assert p1 == P1_FAULTS
