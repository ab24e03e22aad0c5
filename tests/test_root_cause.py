"""Root cause in any selection: ``pytest -m p1`` names the lock and its holder, or the import error that keeps the
backend down, as the root cause, with its own severity and evidence, and offers its fix."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from sandbox import Sandbox

ROOT = Path(__file__).resolve().parent.parent
IMPORT_CHECK = "health/test_backend.py::test_backend_logs_show_no_import_errors"
LOCK_CHECK = "health/test_database.py::test_database_is_not_locked"
LOGIN_CHECK = "health/test_auth.py::test_login_with_test_user_succeeds"


def p1_run(sandbox: Sandbox, report_dir: Path, env: dict | None = None) -> tuple:
    """``pytest -m p1`` against the sandbox: (the finished process, its incident)."""
    argv = [sys.executable, "-m", "pytest", "-m", "p1", "--target-file", str(sandbox.paths["targets_file"])]
    argv += ["--target", "live", "--report-dir", str(report_dir), "-q", "-p", "no:cacheprovider"]
    done = subprocess.run(
        argv, cwd=ROOT, capture_output=True, text=True, timeout=300, env={**os.environ, **(env or {})}
    )
    return done, json.loads((report_dir / "latest.json").read_text())


def assert_the_lock_is_the_root_cause(done, incident) -> dict:
    causes = incident["root_causes"]
    assert [c["id"] for c in causes] == [LOCK_CHECK], done.stdout[-3000:]
    cause = causes[0]
    assert cause["severity"] == "p2"  # its own severity, though the run selected P1 only
    holder = re.search(r"locked by pid (\d+) \((.+)\): it holds the [\w-]+ lock", cause["message"])
    assert holder and "sandbox.helpers dblock" in holder.group(2), cause["message"]
    assert f"root cause: P2 {cause['id']}" in done.stdout
    assert f"pid {holder.group(1)} (" in done.stdout
    return cause


# The runbook layout's rollback journal: a writer's exclusive lock blocks the P1 database reads, which skip
# naming the lock check.
def test_a_p1_run_on_a_locked_database_names_the_lock_and_its_holder(tmp_path):
    with Sandbox(layout="runbook", faults=["db_locked"]) as sandbox:
        done, incident = p1_run(sandbox, tmp_path)
    cause = assert_the_lock_is_the_root_cause(done, incident)
    database = [c for c in cause["explains"] if c.startswith("health/test_database.py::")]
    # The login, not probed by default, would wait on the lock too.
    assert database and set(cause["explains"]) == {*database, LOGIN_CHECK}


# v2's WAL: readers pass a writer's lock, so every P1 database read passes; only writes wait, and every login
# writes. Not probed, the login check names the lock; probed, its failure does, and offers the lock's fix.
def test_a_p1_run_on_a_locked_v2_database_names_the_lock_and_its_holder(tmp_path):
    with Sandbox(layout="v2", faults=["db_locked"]) as sandbox:
        safe, safe_incident = p1_run(sandbox, tmp_path / "safe")
        probed, probed_incident = p1_run(sandbox, tmp_path / "probed", env={"FOSSAWORK_LOGIN_PROBE": "true"})
    assert assert_the_lock_is_the_root_cause(safe, safe_incident)["explains"] == [LOGIN_CHECK]
    assert safe_incident["severity"] == "p2", safe.stdout[-3000:]
    assert assert_the_lock_is_the_root_cause(probed, probed_incident)["explains"] == [LOGIN_CHECK]
    login = next(f for f in probed_incident["failures"] if f["id"] == LOGIN_CHECK)
    assert login["severity"] == "p1" and login["fix"]["cause"] == LOCK_CHECK, probed.stdout[-3000:]
    assert login["fix"]["id"] == "fix-database-issues/database_locked"  # not a restart of the backend


# v2 as deployed: the backend dies at import and its traceback is only in its journal. The P1 checks find it down;
# a restart would die the same way, so the import check (P2, escalate) is the root cause and every fix escalates.
def test_a_p1_run_on_a_backend_that_dies_at_import_names_the_import_error_and_escalates(tmp_path):
    with Sandbox(layout="v2", faults=["import_error"]) as sandbox:
        done, incident = p1_run(sandbox, tmp_path)
    assert [c["id"] for c in incident["root_causes"]] == [IMPORT_CHECK], done.stdout[-3000:]
    cause = incident["root_causes"][0]
    assert cause["severity"] == "p2" and "ModuleNotFoundError" in cause["message"]
    assert incident["severity"] == "p1"  # the backend is down
    down = [f for f in incident["failures"] if f["id"] != IMPORT_CHECK]
    assert {"health/test_backend.py::test_backend_process_is_running"} <= {f["id"] for f in down}
    assert set(cause["explains"]) == {f["id"] for f in down}
    for failure in down:
        assert failure["fix"]["escalate"] and failure["fix"]["cause"] == IMPORT_CHECK, failure
        assert 'died at import: "ModuleNotFoundError' in failure["message"]
        assert f"{failure['id']}: the fix of its cause, {IMPORT_CHECK}: escalate" in done.stdout
    assert "dry run:" not in done.stdout  # no restart offered, nor any other command
    page = (tmp_path / "latest.html").read_text()
    roots = page[page.index('id="incident-root-causes"') : page.index('id="incident-failures"')]
    assert IMPORT_CHECK in roots and "ModuleNotFoundError" in roots
    assert "dry run:" not in page and page.count(f"the fix of its cause, <code>{IMPORT_CHECK}</code>") == len(down)


def test_a_selection_that_reports_its_own_causes_runs_nothing_more(tmp_path):
    with Sandbox(layout="runbook") as sandbox:
        done, incident = p1_run(sandbox, tmp_path)
    assert done.returncode == 0, done.stdout[-2000:]
    assert incident["root_causes"] == []
    assert "root cause" not in done.stdout
