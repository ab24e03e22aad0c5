"""What every fix action shares: dry-run, the audit log, the per-target lock, one step at a time.

A :class:`Remediation` runs one fix: in dry-run (the default) each action is
printed and audited but not carried out; with ``--execute`` it is carried out.
Observations (``r.observe``) run in both modes, through ``observe/``.
"""

from __future__ import annotations

import fcntl
import json
import os
import shlex
import signal
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from observe import profile as profiles
from observe.files import flock_holders, nearest_existing
from observe.secrets import redact, redact_obj

AUDIT_LOG = "remediation-audit.jsonl"
# A scheduled --remediate appends to the audit log for as long as it runs, and every run reads its own entries
# back: at this size the log moves to AUDIT_LOG.1 (the generation before it is dropped), so both stay bounded.
AUDIT_MAX_BYTES = 4 * 2**20
LOCK_FD_ENV = "FOSSAWORK_REMEDIATION_LOCK_FD"
# Crash tests: the process SIGKILLs itself right after its Nth carried-out step, as a power cut would.
KILL_AFTER_STEP_ENV = "FOSSAWORK_KILL_AFTER_STEP"
EXIT_OK, EXIT_FAILED, EXIT_BUSY, EXIT_REFUSED = 0, 1, 3, 4


class StepFailed(Exception):
    """An action failed; the fix stops there (later actions may depend on it)."""


class Refused(StepFailed):
    """A safety condition did not hold, so the fix changed nothing (not attempted, with the reason)."""


class Busy(Exception):
    """Another remediation holds the target's lock; ``pid`` is its process."""

    def __init__(self, pid: str, where: Path):
        super().__init__(f"remediation in progress (pid {pid}, lock on {where})")
        self.pid = pid


def _open_audit_log(path: Path) -> int:
    """The audit log opened for appending and locked (the lock ends with the fd), rotated first when full.

    Under the lock one writer rotates; another that opened the same file before the rename finds a new file
    at ``path`` and appends there, so no entry lands in a generation about to be dropped."""
    for _ in range(3):
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        here = os.fstat(fd)
        try:
            current = os.stat(path, follow_symlinks=False)
        except FileNotFoundError:
            current = None
        if current is None or (current.st_dev, current.st_ino) != (here.st_dev, here.st_ino):
            os.close(fd)  # rotated by another writer since we opened it: append to the new one
            continue
        if here.st_size < AUDIT_MAX_BYTES:
            return fd
        os.replace(path, path.with_name(path.name + ".1"))
        os.close(fd)
    raise OSError(f"cannot open {path}: rotated by other writers three times in a row")


def stamp() -> str:
    """UTC timestamp for file names: 20250113T101500Z."""
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def unique_path(directory: Path, stem: str, suffix: str = "") -> Path:
    """``directory/stem+suffix``, or with -2, -3... appended: never an existing file."""
    candidate, n = directory / f"{stem}{suffix}", 1
    while candidate.exists() or candidate.is_symlink():
        n += 1
        candidate = directory / f"{stem}-{n}{suffix}"
    return candidate


class RemediationLock:
    """Exclusive, non-blocking flock on the directory that holds the target's database.

    The lock belongs to the target, not to the report directory: two runs with different
    ``--report-dir`` still find each other, and nothing is created for it (a directory can be
    flocked as it is). A fix script started by the pytest plugin inherits the plugin's locked
    descriptor (``FOSSAWORK_REMEDIATION_LOCK_FD``): it holds the same lock, so the plugin and
    its scripts count as one remediation.
    """

    def __init__(self, profile: profiles.Profile):
        self.path = nearest_existing(Path(profile.db_path).parent)
        self.fd: int | None = None
        self._inherited = False

    def acquire(self) -> RemediationLock:
        """Take the lock or raise :class:`Busy` naming the holder's pid."""
        inherited = os.environ.get(LOCK_FD_ENV, "")
        if inherited.isdigit() and self._same_file(int(inherited)):
            fd, self._inherited = int(inherited), True
        else:
            fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if not self._inherited:
                os.close(fd)
            holders = ", ".join(map(str, flock_holders(self.path))) or "unknown"
            raise Busy(holders, self.path) from None
        self.fd = fd
        return self

    def _same_file(self, fd: int) -> bool:
        try:
            a, b = os.fstat(fd), os.stat(self.path)
        except OSError:
            return False
        return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)

    def release(self) -> None:
        if self.fd is not None and not self._inherited:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
        self.fd = None

    def __enter__(self) -> RemediationLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


class Remediation:
    """One fix against one target: prints and audits every action; carries them out only when ``execute``."""

    def __init__(self, profile, script, issue_type, execute, report_dir, run_id="", out=None):
        self.profile = profile
        self.script = script
        self.issue_type = issue_type
        self.execute = execute
        self.report_dir = Path(report_dir)
        self.run_id = run_id
        self.out = out or sys.stdout
        self.changed = False  # whether any step was carried out: a refusal after a change is a failure
        self.steps_done = 0
        self.evidence_saved = False  # the logs are copied into the incident's folder once per fix
        self.loss: dict[str, dict] = {}  # per table: rows before/after, lost, new orphans (data fixes only)
        self.outcome = ""  # completed, failed or refused, with ``reason``
        self.reason = ""
        self.accept_older_backup = False  # recovery may install a backup older than the damaged original

    def say(self, text: str) -> None:
        print(redact(text), file=self.out, flush=True)

    def audit(self, action: str, result: str, detail: str = "") -> None:
        """Append one line to the audit log (redacted); the only file a dry run writes."""
        entry = {
            "time": now_iso(),
            "run_id": self.run_id,
            "target": self.profile.name,
            "script": self.script,
            "issue_type": self.issue_type,
            "action": action,
            "dry_run": not self.execute,
            "result": result,
            "detail": detail,
        }
        self.report_dir.mkdir(parents=True, exist_ok=True)
        line = json.dumps(redact_obj(entry)) + "\n"
        with os.fdopen(_open_audit_log(self.report_dir / AUDIT_LOG), "w", encoding="utf-8") as f:
            f.write(line)

    def step(self, action: str, do: Callable[[], object]) -> object:
        """An action that changes the target: described in dry-run, carried out (and its result shown) otherwise."""
        if not self.execute:
            self.say(f"[dry-run] would {action}")
            self.audit(action, "dry-run")
            return None
        self.changed = True
        try:
            result = do()
        except Exception as exc:  # every failure becomes one reported line, never a traceback
            detail = f"{exc.__class__.__name__}: {exc}"
            self.say(f"[failed] {action}: {detail}")
            self.audit(action, "failed", detail)
            raise StepFailed(f"{action}: {detail}") from exc
        detail = "" if result is None else str(result)
        self.say(f"[done] {action}" + (f": {detail}" if detail else ""))
        self.audit(action, "done", detail)
        self.steps_done += 1
        if os.environ.get(KILL_AFTER_STEP_ENV) == str(self.steps_done):
            os.kill(os.getpid(), signal.SIGKILL)
        return result

    def observe(self, what: str, look: Callable[[], object]) -> object:
        """A read-only observation: runs in dry-run too, its result is printed and audited."""
        try:
            result = look()
        except Exception as exc:
            result = f"could not observe ({exc.__class__.__name__}: {exc})"
        self.say(f"[info] {what}: {result}")
        self.audit(what, "observed", str(result))
        return result

    def fail(self, why: str) -> None:
        """Stop the fix with a reason (a condition the fix must not work around)."""
        self.say(f"[stop] {why}")
        self.audit("stop", "failed", why)
        raise StepFailed(why)

    def refuse(self, why: str) -> None:
        """Stop before acting: a safety condition does not hold. After a change, it is a failure instead."""
        if self.changed:
            self.fail(why)
        self.say(f"[refused] {why}")
        self.audit("refuse", "refused", why)
        raise Refused(why)

    def record_loss(self, loss: dict[str, dict]) -> None:
        """Per-table evidence that data was lost (rows or referential integrity): the outcome is at best a loss."""
        self.loss.update(loss)

    def result(self) -> dict:
        """What the fix did, for the --remediate judgement: outcome, reason, per-table loss."""
        return {"outcome": self.outcome, "reason": self.reason, "changed": self.changed, "loss": self.loss}


def refuse_links(r: Remediation, paths: list[Path]) -> None:
    """Refuse (before any change) to act through a symlink: it could point anywhere outside the target."""
    links = [str(p) for p in paths if Path(p).is_symlink()]
    if links:
        r.refuse(f"symlinks are not followed out of the target: {', '.join(links)}")


def run_command(argv: list[str], timeout: float, cwd: str | None = None) -> str:
    """Run a command; its last output lines are the result, a non-zero exit is a failed step."""
    try:
        done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise StepFailed(f"{shlex.join(argv)} did not finish within {timeout:g} s") from None
    tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-5:])
    if done.returncode:
        raise StepFailed(f"{shlex.join(argv)} exited {done.returncode}: {tail}")
    return tail or "ok"
