"""The runbook's own diagnostic procedures, re-implemented faithfully as the benchmark's baseline.

Nothing here is used by the suite: it is what an on-call engineer following
/work/shared/runbook/troubleshooting-runbook.md would run, with the runbook's
endpoint order, its timeouts and its serial loops, pointed at the same target
as the suite (the profile's URLs and paths instead of localhost:8000 and
/backend). Each function returns what it found, like the runbook's
``issues_found``; the benchmark only times it.

* :func:`p1_probes`: the probes behind the suite's P1 checks, in the runbook's
  order: diagnose-backend.py (``check_api_health``: 4 GETs, 5 s each,
  ``check_database_connection``, ``check_backend_process``),
  diagnose-authentication.py (``check_auth_endpoints``: 3 OPTIONS, 5 s each;
  ``check_jwt_configuration``; ``test_login_flow``: POST, 10 s;
  ``check_token_validation``: GET, 5 s; ``check_credential_storage``),
  diagnose-frontend.py (``check_frontend_server``: GET, 10 s) and the
  services rule of automated-issue-detection.py.
* :func:`readlines_tail`: diagnose-backend.py's ``check_log_errors``
  (``readlines()`` of the whole file, then its last 10 lines).
* :func:`database_full`: diagnose-database.py's ``PRAGMA integrity_check`` and
  ``SELECT COUNT(*)`` of every table, on a plain read-write connection.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess

API_ENDPOINTS = ["/api/health", "/api/auth/validate", "/api/work-orders", "/api/dispensers"]
AUTH_ENDPOINTS = ["/api/auth/login", "/api/auth/validate", "/api/auth/logout"]
ERROR_PATTERNS = ["ConnectionError", "DatabaseError", "TimeoutError", "MemoryError"]


def p1_probes(api_base: str, frontend_url: str, db_path: str, credentials_dir: str) -> list[str]:
    """The runbook's serial P1 diagnostics against one deployment; returns the issues found."""
    import psutil
    import requests

    issues: list[str] = []
    # diagnose-backend.py: check_api_health
    for endpoint in API_ENDPOINTS:
        try:
            response = requests.get(f"{api_base}{endpoint}", timeout=5)
            if response.status_code != 200:
                issues.append(f"API endpoint {endpoint} returned {response.status_code}")
        except requests.exceptions.ConnectionError:
            issues.append(f"Cannot connect to {endpoint}")
        except requests.exceptions.Timeout:
            issues.append(f"Timeout connecting to {endpoint}")
    # diagnose-backend.py: check_database_connection
    try:
        conn = sqlite3.connect(db_path, timeout=5)
        cursor = conn.cursor()
        cursor.execute("SELECT COUNT(*) FROM sqlite_master")
        if cursor.fetchone()[0] == 0:
            issues.append("Database has no tables")
        cursor.execute("PRAGMA integrity_check")
        result = cursor.fetchone()[0]
        if result != "ok":
            issues.append(f"Database integrity check failed: {result}")
        conn.close()
    except sqlite3.Error as exc:
        issues.append(f"Database error: {exc}")
    # diagnose-backend.py: check_backend_process
    found = [
        p.info
        for p in psutil.process_iter(["pid", "name", "cmdline"])
        if "uvicorn" in (p.info["name"] or "") or any("uvicorn" in c for c in p.info["cmdline"] or [])
    ]
    if not found:
        issues.append("No backend (uvicorn) process found")
    # diagnose-authentication.py: check_auth_endpoints
    for endpoint in AUTH_ENDPOINTS:
        try:
            response = requests.options(f"{api_base}{endpoint}", timeout=5)
            if response.status_code not in [200, 405]:
                issues.append(f"Auth endpoint {endpoint} not accessible")
        except Exception as exc:  # noqa: BLE001 - as the runbook does
            issues.append(f"Auth endpoint {endpoint} error: {exc}")
    # check_jwt_configuration
    secret = os.getenv("SECRET_KEY")
    if not secret or len(secret) < 32:
        issues.append("JWT SECRET_KEY not configured or too short")
    # test_login_flow (the runbook's 10 s)
    try:
        response = requests.post(
            f"{api_base}/api/auth/login", json={"username": "test@example.com", "password": "testpassword"}, timeout=10
        )
        if response.status_code not in [200, 401]:
            issues.append(f"Login endpoint unexpected status: {response.status_code}")
    except Exception as exc:  # noqa: BLE001
        issues.append(f"Login flow test error: {exc}")
    # check_token_validation
    try:
        response = requests.get(
            f"{api_base}/api/auth/validate", headers={"Authorization": "Bearer invalid_token"}, timeout=5
        )
        if response.status_code not in [401, 403]:
            issues.append(f"Token validation unexpected behavior: {response.status_code}")
    except Exception as exc:  # noqa: BLE001
        issues.append(f"Token validation test error: {exc}")
    # check_credential_storage
    if credentials_dir and not os.path.exists(credentials_dir):
        issues.append("Credentials directory not found")
    # diagnose-frontend.py: check_frontend_server (the runbook's 10 s)
    try:
        response = requests.get(frontend_url, timeout=10)
        if response.status_code != 200:
            issues.append(f"Frontend server returned {response.status_code}")
    except Exception as exc:  # noqa: BLE001
        issues.append(f"Frontend error: {exc}")
    # automated-issue-detection.py: detect_service_failures
    for service in ["fossawork-backend", "fossawork-frontend"]:
        try:
            result = subprocess.run(["systemctl", "is-active", service], capture_output=True, text=True)
            if result.stdout.strip() != "active":
                issues.append(f"Service {service} is not active")
        except OSError:
            pass
    return issues


def readlines_tail(path: str) -> list[str]:
    """diagnose-backend.py's check_log_errors: the whole file through readlines(), then its last 10 lines."""
    issues = []
    with open(path) as f:
        lines = f.readlines()
    recent = lines[-10:]
    if len(recent) > 5:
        issues.append(f"High error rate: {len(recent)} recent errors")
    for line in recent:
        try:
            message = json.loads(line).get("message", "")
        except ValueError:
            continue
        issues += [f"Critical error pattern found: {p}" for p in ERROR_PATTERNS if p in message][:1]
    return issues


def database_full(db_path: str) -> list[str]:
    """diagnose-database.py: integrity_check, then COUNT(*) of every table."""
    issues = []
    conn = sqlite3.connect(db_path, timeout=10)
    cursor = conn.cursor()
    cursor.execute("PRAGMA integrity_check")
    result = cursor.fetchone()[0]
    if result != "ok":
        issues.append(f"Database integrity check failed: {result}")
    cursor.execute("SELECT name FROM sqlite_master WHERE type='table'")
    for (table,) in cursor.fetchall():
        cursor.execute(f"SELECT COUNT(*) FROM {table}")
        if cursor.fetchone()[0] > 100000:
            issues.append(f"Large table: {table}")
    conn.close()
    return issues
