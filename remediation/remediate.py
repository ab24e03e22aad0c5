"""``--remediate``: run each failing check's fix once (P1 first) under the target's lock, then re-check.

Fixes run as subprocesses of their scripts (``--execute``), so an engineer
pasting the command from the report gets exactly what the plugin ran. The
re-check is a subprocess pytest run of exactly the failed node ids against
the same live target (for a sandbox profile: its resolved profile written to
a temporary targets file, while this run keeps the sandbox up).
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from observe.secrets import redact
from remediation.actions.core import LOCK_FD_ENV, Busy, RemediationLock
from remediation.results import CheckResult
from remediation.scripts import ESCALATE, Fix, command, module_name

FIX_TIMEOUT_SECONDS = 900
RECHECK_TIMEOUT_SECONDS = 600
_LOCK_KEY = pytest.StashKey[RemediationLock]()


def ordered_fixes(failing: list[CheckResult]) -> dict[Fix, list[str]]:
    """Distinct (script, issue type) of the failing checks, most severe first, with the checks each one serves."""
    out: dict[Fix, list[str]] = {}
    for result in sorted(failing, key=lambda r: r.rank):
        check = result.check
        if check["script"] != ESCALATE:
            out.setdefault(Fix(check["script"], check["issue_type"]), []).append(result.nodeid)
    return out


def live_target(config: pytest.Config, workdir: Path) -> tuple[str, str, object] | None:
    """(targets file, profile name, profile) that fix scripts and the re-check can use without a new sandbox."""
    from fixtures.target import target_plugin
    from observe import profile as profiles

    tp = target_plugin(config)
    if tp.sandbox is not None:
        path = workdir / "live-targets.toml"
        tp.sandbox.write_targets(path)
        name = next(iter(profiles.read_file(path)))
        return str(path), name, profiles.resolve(path, name)
    if tp.declared.sandbox:
        return None  # no check started the sandbox: there is nothing live to fix
    return str(tp.path), tp.name, tp.profile()


def remediate(config: pytest.Config, recorder, results: list[CheckResult]) -> dict:
    """Run the fixes and the re-check; each failing result gets its ``remediation``; returns the run's summary.

    The summary is {status, fixes: {fix id: ...}, recheck: {node id: ...}, targets: {name: (file, profile)}}.
    """
    from fixtures.target import targets

    failing = [r for r in results if r.status == "failed"]
    out = {"status": "", "fixes": {}, "recheck": {}, "targets": {}}
    if len(targets(config)) > 1:
        out["status"] = "not run: --remediate acts on one target at a time; rerun with a single --target"
    else:
        # The sandbox's live targets file and the re-check's result: scratch for this run only, removed with it.
        with tempfile.TemporaryDirectory(prefix="fossawork-remediate-") as workdir:
            _remediate(config, recorder, failing, out, Path(workdir))
    for result in failing:
        result.remediation = outcome_of(result, out)
    return out


def outcome_of(result: CheckResult, out: dict) -> dict:
    """What remediation did for one failing check: the fix run (if any) and its re-check."""
    fix = Fix(result.check["script"], result.check["issue_type"])
    ran = out["fixes"].get(fix.id)
    if result.check["script"] == ESCALATE:
        action = "escalated: nothing run"
    else:
        action = "ran" if ran else out["status"]
    return {
        "action": action,
        "command": ran["command"] if ran else None,
        "exit_code": ran["exit_code"] if ran else None,
        "output": ran["output"] if ran else "",
        "recheck": out["recheck"].get(result.nodeid),
    }


def _remediate(config: pytest.Config, recorder, failing: list[CheckResult], out: dict, workdir: Path) -> None:
    from fixtures.target import target_plugin

    live = live_target(config, workdir)
    if live is None:
        out["status"] = "not run: the sandbox profile was never started, nothing live to fix"
        return
    target_file, target, profile = live
    out["targets"][target_plugin(config).name] = (target_file, target)
    lock = RemediationLock(recorder.report_dir, profile)
    try:
        lock.acquire()
    except Busy as exc:
        out["status"] = f"{exc}: acted on nothing"
        return
    config.stash[_LOCK_KEY] = lock
    try:
        for fix, checks in ordered_fixes(failing).items():
            started = time.monotonic()
            ran = config.hook.pytest_fossawork_remediate(
                config=config,
                fix=fix,
                target_file=target_file,
                target=target,
                report_dir=recorder.report_dir,
                run_id=recorder.run_id,
            )
            out["fixes"][fix.id] = {
                "fix": fix.id,
                "script": fix.script,
                "issue_type": fix.issue_type,
                "checks": checks,
                "command": redact(ran["command"]),
                "exit_code": ran["exit_code"],
                "output": redact(ran["output"]),
                "duration_seconds": round(time.monotonic() - started, 3),
            }
        out["recheck"] = recheck(config, [r.nodeid for r in failing], target_file, target, workdir)
        out["status"] = f"ran {len(out['fixes'])} fix(es), re-checked {len(failing)} check(s)"
    finally:
        lock.release()
        del config.stash[_LOCK_KEY]


@pytest.hookimpl(trylast=True)
def pytest_fossawork_remediate(config, fix, target_file, target, report_dir, run_id):
    """Default: run the fix script with --execute, holding (sharing) this run's lock."""
    argv = [sys.executable, "-m", module_name(fix.script), *([fix.issue_type] if fix.issue_type else [])]
    argv += ["--target-file", target_file, "--target", target, "--execute", "--report-dir", str(report_dir)]
    argv += ["--run-id", run_id]
    lock = config.stash[_LOCK_KEY]
    env = {**os.environ, LOCK_FD_ENV: str(lock.fd)}
    try:
        done = subprocess.run(
            argv,
            cwd=config.rootpath,
            env=env,
            pass_fds=(lock.fd,),
            capture_output=True,
            text=True,
            timeout=FIX_TIMEOUT_SECONDS,
        )
        code, output = done.returncode, done.stdout + done.stderr
    except subprocess.TimeoutExpired as exc:
        code, output = -1, f"{exc.output or ''}\ntimed out after {FIX_TIMEOUT_SECONDS} s"
    return {"command": command(fix.script, fix.issue_type, target_file, target), "exit_code": code, "output": output}


def recheck(config: pytest.Config, nodeids: list[str], target_file: str, target: str, workdir: Path) -> dict:
    """Re-run exactly ``nodeids`` against the live target: {node id: 'fixed' | 'still failing' | reason}."""
    if not nodeids:
        return {}
    result_file = workdir / "recheck.json"
    argv = [sys.executable, "-m", "pytest", *nodeids, "--target-file", target_file, "--target", target]
    argv += ["--rootdir", str(config.rootpath), "-p", "no:cacheprovider", "-q", "--no-incident-report"]
    argv += ["--recheck-result", str(result_file)]
    argv += ["-c", str(config.inipath)] if config.inipath else []
    try:
        done = subprocess.run(
            argv, cwd=config.rootpath, capture_output=True, text=True, timeout=RECHECK_TIMEOUT_SECONDS
        )
        outcomes = json.loads(result_file.read_text())
    except (subprocess.TimeoutExpired, OSError, ValueError) as exc:
        return {n: f"not re-checked: {exc.__class__.__name__}" for n in nodeids}
    labels = {"passed": "fixed", "failed": "still failing", "skipped": "skipped on re-check"}
    missing = f"not re-checked (exit {done.returncode}: {redact(shlex.join(argv[3:6]))})"
    return {n: labels.get(outcomes.get(n), missing) for n in nodeids}
