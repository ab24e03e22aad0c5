"""What the service manager captured of the backend's stdout and stderr: a file, or its systemd journal.

FossaWork V2 crashing at import (a missing dependency) writes its traceback to stderr only, never to its log
files: only the service manager has it. ``backend_output`` names where: a file the manager appends to, or
``journal`` for the unit's journal (read with ``journalctl``, bounded by time, lines and a timeout). A file
has no timestamps, so only what follows the last successful start (uvicorn's "Started server process") is
the current start attempt; a file not written inside the window says nothing new.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from datetime import timedelta

from observe.files import read_tail
from observe.logs import Logs
from observe.profile import Profile
from observe.services import systemd_unit

IMPORT_ERRORS = ("ImportError", "ModuleNotFoundError")
STARTED = re.compile(r"Started server process|Application startup complete|Uvicorn running on")
JOURNAL_TIMEOUT = 5.0
MAX_LINES = 2000


@dataclass
class Output:
    """The lines of the backend's last start attempt, and where they came from (or why there are none)."""

    source: str
    lines: list[str] = field(default_factory=list)
    problem: str = ""  # why nothing could be read ('' when the source was read)

    def evidence(self) -> str:
        return self.source + (f" ({self.problem})" if self.problem else f", {len(self.lines)} line(s)")


def last_start(profile: Profile, window_seconds: float, tail_bytes: int) -> Output:
    """The captured output of the backend's last start attempt within the window."""
    where = profile.backend_output
    if not where:
        return Output("no backend_output", problem="the profile names no captured output")
    if where == "journal":
        return _journal(profile, window_seconds)
    try:
        data, st = read_tail(where, tail_bytes)
    except OSError as exc:
        return Output(where, problem=f"cannot read: {exc.strerror or exc}")
    if time.time() - st.st_mtime > window_seconds:
        return Output(where, problem=f"not written in the last {window_seconds / 60:g} min")
    lines = data.decode("utf-8", "replace").splitlines()
    starts = [i for i, line in enumerate(lines) if STARTED.search(line)]
    return Output(where, lines[starts[-1] + 1 :] if starts else lines)


def _journal(profile: Profile, window_seconds: float) -> Output:
    unit = systemd_unit(profile, "backend")
    if not unit or not shutil.which("journalctl"):
        return Output("journal", problem="no systemd journal on this host (or no backend_unit)")
    argv = ["journalctl", "-u", unit, "--since", f"-{int(window_seconds)}s", "-o", "cat", "--no-pager"]
    argv += ["-n", str(MAX_LINES)]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=JOURNAL_TIMEOUT, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return Output(f"journal of {unit}", problem=f"journalctl gave no answer within {JOURNAL_TIMEOUT:g} s")
    if done.returncode:
        return Output(f"journal of {unit}", problem=(done.stderr.strip() or "journalctl failed")[:200])
    lines = done.stdout.splitlines()
    starts = [i for i, line in enumerate(lines) if STARTED.search(line)]
    return Output(f"journal of {unit}", lines[starts[-1] + 1 :] if starts else lines)


@dataclass
class ImportErrors:
    """The import errors of the backend's last start, oldest first, and where they were looked for."""

    lines: list[str]
    evidence: str
    logs_read: bool  # a startup log was there to read
    output_read: bool  # the captured output was there to read

    @property
    def observed(self) -> bool:
        return self.logs_read or self.output_read


def import_errors(profile: Profile, logs: Logs) -> ImportErrors:
    """Import errors inside the backend error window: in the startup logs (the runbook's place) and in what the
    service manager captured of the last start attempt, where a crash at import leaves its only traceback."""
    minutes = profile.thresholds.backend_errors_window_minutes
    named = lambda text: any(name in text for name in IMPORT_ERRORS)  # noqa: E731
    tail = logs.since("startup", timedelta(minutes=minutes), keep=lambda e: named(e.message))
    output = last_start(profile, minutes * 60, profile.logs.tail_bytes)
    lines = [e.message.splitlines()[-1] for e in tail.entries] + [line for line in output.lines if named(line)]
    evidence = f"{tail.evidence()}; captured output: {output.evidence()}"
    return ImportErrors(lines, evidence, bool(tail.files), not output.problem)
