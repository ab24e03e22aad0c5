"""``--remediate``: run each failing check's fix once (P1 first) under the target's lock, re-check, judge.

Fixes run as subprocesses of their scripts (``--execute``), so an engineer
pasting the command from the report gets exactly what the plugin ran; each
script writes what it did (completed, refused, failed; rows lost per table) to
a result file. The re-check is a subprocess pytest run of every check this run
ran, against the same live target (for a sandbox profile: its resolved profile
written to a temporary targets file, while this run keeps the sandbox up).

Each remediated failure then ends as exactly one outcome (:data:`OUTCOMES`):
``fixed`` only when its check and every check of its component pass again and
nothing that passed before fails now; ``fixed with loss`` when the fix reports
rows lost; ``made worse`` when a check that passed before fails now; ``still
failing``; ``not attempted`` (escalated, or refused, with the reason).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from observe.secrets import redact
from remediation.actions.core import LOCK_FD_ENV, Busy, RemediationLock
from remediation.contract import SEVERITIES
from remediation.results import CheckResult
from remediation.scripts import ESCALATE, Fix, command, fix_id, module_name

FIX_TIMEOUT_SECONDS = 900
RECHECK_TIMEOUT_SECONDS = 600
_LOCK_KEY = pytest.StashKey[RemediationLock]()


def ordered_fixes(failing: list[CheckResult]) -> dict[Fix, list[str]]:
    """Distinct (script, issue type) of the failing checks, most severe first, with the checks each one serves."""
    out: dict[Fix, list[str]] = {}
    for result in sorted(failing, key=lambda r: r.rank):
        fix = result.fix
        if fix["script"] != ESCALATE:
            out.setdefault(Fix(fix["script"], fix["issue_type"]), []).append(result.nodeid)
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


OUTCOMES = ("fixed", "fixed with loss", "still failing", "made worse", "not attempted")


def remediate(config: pytest.Config, recorder, results: list[CheckResult]) -> dict:
    """Run the fixes, re-check every check of the run, and judge each failure; returns the run's summary.

    Each failing result gets its ``remediation`` (outcome, reason, fix run, re-check). The summary is
    {status, fixes: {fix id: ...}, recheck: {node id: status}, made_worse: [...], targets, counts}.
    """
    from fixtures.target import targets

    failing = [r for r in results if r.status == "failed"]
    out = {"status": "", "fixes": {}, "recheck": {}, "made_worse": [], "targets": {}}
    if len(targets(config)) > 1:
        out["status"] = "not run: --remediate acts on one target at a time; rerun with a single --target"
    elif failing and recorder.unwritable is not None:
        reason = recorder.unwritable.strerror or recorder.unwritable.__class__.__name__
        # A fix leaves an audit trail or does not run.
        out["status"] = f"not run: the fixes' audit log cannot be written in {recorder.report_dir} ({reason})"
    elif failing:
        # The sandbox's live targets file and the fixes' result files: scratch for this run only.
        with tempfile.TemporaryDirectory(prefix="fossawork-remediate-") as workdir:
            _remediate(config, recorder, results, failing, out, Path(workdir))
    else:
        out["status"] = "nothing to fix"
    before = {r.nodeid: r.status for r in results}
    out["made_worse"] = sorted(
        n for n, status in out["recheck"].items() if status == "failed" and before.get(n) == "passed"
    )
    for result in failing:
        result.remediation = judge(result, results, out)
    out["counts"] = {name: sum(r.remediation["outcome"] == name for r in failing) for name in OUTCOMES}
    # What is still open: every failure not "fixed", and every check the fixes made fail.
    left = [r for r in failing if r.remediation["outcome"] != "fixed"]
    left += [r for r in results if r.nodeid in out["made_worse"]]
    out["severity_after"] = next((s for s in SEVERITIES if any(r.severity == s for r in left)), "healthy")
    return out


def judge(result: CheckResult, results: list[CheckResult], out: dict) -> dict:
    """The one outcome of a remediated failure, with its reason and the evidence it rests on.

    The re-check decides: a failure whose own fix was escalated or refused can still end fixed by another
    fix of the run (its component passes again), and a data loss reported by any fix that served a check of
    the same component makes it a loss.
    """
    fix = Fix(result.fix["script"], result.fix["issue_type"])
    ran = out["fixes"].get(fix.id)
    done = (ran or {}).get("result", {})
    loss = component_loss(result.component, results, out)
    verdict = {
        "outcome": "not attempted",
        "reason": "",
        "command": ran["command"] if ran else None,
        "dry_run_command": ran["dry_run_command"] if ran else None,
        "exit_code": ran["exit_code"] if ran else None,
        "output": ran["output"] if ran else "",
        "recheck": out["recheck"].get(result.nodeid),
        "loss": loss,
    }
    if fix.script == ESCALATE and result.cause:
        own = fix_id(result.check["script"], result.check["issue_type"])
        why = (
            f"escalated: its cause, reported by {result.cause['id']}, has no safe fix, and its own ({own}) cannot help"
        )
    elif fix.script == ESCALATE:
        why = "escalated: the runbook has no safe fix, a human decides"
    elif ran is None:
        why = out["status"] or "fix not run"
    elif done.get("outcome") == "refused" and not done.get("changed"):
        why = f"refused: {done.get('reason', '')}"
    else:
        why = ""
    if out["made_worse"] and out["fixes"]:
        return {**verdict, "outcome": "made worse", "reason": f"now failing: {', '.join(out['made_worse'])}"}
    component = [r.nodeid for r in results if r.component == result.component]
    still = [n for n in component if out["recheck"].get(n) == "failed"]
    own = out["recheck"].get(result.nodeid) in ("passed", "skipped")
    if own and loss:
        # Rows lost or foreign keys orphaned: "fixed with loss" at best, and what still fails is named with it.
        left = f"; still failing: {', '.join(still)}" if still else ""
        return {**verdict, "outcome": "fixed with loss", "reason": loss_text(loss) + left}
    if not own or still or not out["recheck"]:
        if why:
            return {**verdict, "reason": why}
        reason = f"failing on re-check: {', '.join(still)}" if still else "not re-checked"
        return {**verdict, "outcome": "still failing", "reason": reason}
    if ran is not None and done.get("outcome") not in ("completed", "refused"):
        return {**verdict, "outcome": "still failing", "reason": f"the fix {done.get('outcome') or 'did not report'}"}
    by = "" if not why else f" (its own fix {why.split(':')[0]}; fixed by the run's other fixes)"
    return {**verdict, "outcome": "fixed", "reason": f"every {result.component} check passes again{by}"}


def component_loss(component: str | None, results: list[CheckResult], out: dict) -> dict:
    """The data loss reported by the fixes that served a check of ``component``."""
    of = {r.nodeid: r.component for r in results}
    loss: dict = {}
    for ran in out["fixes"].values():
        if any(of.get(check) == component for check in ran["checks"]):
            loss.update(ran.get("result", {}).get("loss", {}))
    return loss


def loss_text(loss: dict[str, dict]) -> str:
    """'work_orders: 295 of 400 rows lost; dispensers: 12 new orphans' from a fix's per-table loss."""
    parts = []
    for table, what in sorted(loss.items()):
        bits = []
        if what.get("lost"):
            bits.append(f"{what['lost']} of {what['before']} rows lost")
        if what.get("orphans"):
            bits.append(f"{what['orphans']} new orphans")
        parts.append(f"{table}: {', '.join(bits) or what}")
    return "; ".join(parts)


def _remediate(
    config: pytest.Config, recorder, results: list[CheckResult], failing: list[CheckResult], out: dict, workdir: Path
) -> None:
    from fixtures.target import target_plugin

    live = live_target(config, workdir)
    if live is None:
        out["status"] = "not run: the sandbox profile was never started, nothing live to fix"
        return
    target_file, target, profile = live
    out["targets"][target_plugin(config).name] = (target_file, target)
    lock = RemediationLock(profile)
    try:
        lock.acquire()
    except Busy as exc:
        out["status"] = f"{exc}: acted on nothing"
        return
    config.stash[_LOCK_KEY] = lock
    try:
        for fix, checks in ordered_fixes(failing).items():
            started = time.monotonic()
            result_file = workdir / f"{fix.id.replace('/', '-')}.json"
            ran = config.hook.pytest_fossawork_remediate(
                config=config,
                fix=fix,
                target_file=target_file,
                target=target,
                report_dir=recorder.report_dir,
                run_id=recorder.run_id,
                result_file=result_file,
            )
            try:
                done = json.loads(result_file.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                done = {"outcome": "failed", "reason": f"no result from the fix (exit {ran['exit_code']})"}
            out["fixes"][fix.id] = {
                "fix": fix.id,
                "script": fix.script,
                "issue_type": fix.issue_type,
                "checks": checks,
                "command": redact(ran["command"]),
                "dry_run_command": redact(command(fix.script, fix.issue_type, target_file, target, execute=False)),
                "exit_code": ran["exit_code"],
                "output": redact(ran["output"]),
                "result": done,
                "duration_seconds": round(time.monotonic() - started, 3),
            }
        out["recheck"] = recheck(config, [r.nodeid for r in results], target_file, target, workdir)
        out["status"] = f"ran {len(out['fixes'])} fix(es), re-checked {len(results)} check(s)"
    finally:
        lock.release()
        del config.stash[_LOCK_KEY]


@pytest.hookimpl(trylast=True)
def pytest_fossawork_remediate(config, fix, target_file, target, report_dir, run_id, result_file):
    """Default: run the fix script with --execute, holding (sharing) this run's lock."""
    argv = [sys.executable, "-m", module_name(fix.script), *([fix.issue_type] if fix.issue_type else [])]
    argv += ["--target-file", target_file, "--target", target, "--execute", "--report-dir", str(report_dir)]
    argv += ["--run-id", run_id, "--result-file", str(result_file)]
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
    """Re-run ``nodeids`` against the live target: {node id: passed | failed | skipped}; {} when it could not run."""
    if not nodeids:
        return {}
    result_file = workdir / "recheck.json"
    argv = [sys.executable, "-m", "pytest", *nodeids, "--target-file", target_file, "--target", target]
    argv += ["--rootdir", str(config.rootpath), "-p", "no:cacheprovider", "-q", "--no-incident-report"]
    argv += ["--recheck-result", str(result_file)]
    argv += ["-c", str(config.inipath)] if config.inipath else []
    try:
        subprocess.run(argv, cwd=config.rootpath, capture_output=True, text=True, timeout=RECHECK_TIMEOUT_SECONDS)
        return json.loads(result_file.read_text())
    except (subprocess.TimeoutExpired, OSError, ValueError):
        return {}
