"""The backend and frontend as services: systemd units, pid files and the processes behind them.

A pid file is read with :func:`observe.files.read_small`, so a FIFO or a huge file in
its place is an error line, not a wait; a pid is only believed when its process is alive
and its command line matches the profile's, so a reused pid never names another program.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from pathlib import Path

import psutil

from observe.files import Account, account, read_small
from observe.processes import Processes
from observe.profile import Profile

SYSTEMCTL_TIMEOUT = 5.0


def systemd_unit(profile: Profile, which: str) -> str:
    """The service's systemd unit when the profile names one and systemd runs this host (sd_booted()); else ''."""
    unit = profile.values[f"{which}_unit"]
    if unit and shutil.which("systemctl") and os.path.isdir("/run/systemd/system"):
        return unit
    return ""


def unit_state(unit: str) -> str:
    """``systemctl is-active UNIT`` ('active', 'failed', ...), bounded by SYSTEMCTL_TIMEOUT."""
    try:
        done = subprocess.run(
            ["systemctl", "is-active", unit], capture_output=True, text=True, timeout=SYSTEMCTL_TIMEOUT
        )
    except subprocess.TimeoutExpired:
        return f"no answer from systemctl within {SYSTEMCTL_TIMEOUT:g} s"
    except OSError as exc:
        return f"systemctl failed: {exc.strerror}"
    return (done.stdout.strip() or done.stderr.strip())[:200] or "unknown"


def pid_file(profile: Profile, which: str) -> Path | None:
    return Path(profile.pid_dir) / f"{which}.pid" if profile.pid_dir else None


def read_pid(path: Path | None) -> int | None:
    """The pid written in ``path`` if that process is alive, else None (a FIFO or garbage is None too)."""
    if path is None:
        return None
    try:
        pid = int(read_small(path, 64).split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return pid if pid > 0 and psutil.pid_exists(pid) else None


def service_process(profile: Profile, which: str) -> psutil.Process | None:
    """The live process of the service from its pid file, if its family's command line matches the profile's."""
    pid = read_pid(pid_file(profile, which))
    if pid is None:
        return None
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
        marker = profile.values[f"{which}_process"]
        family = [proc, *proc.children(recursive=True)]
        if marker and not any(marker in " ".join(p.cmdline()) for p in family):
            return None
        return proc
    except psutil.Error:
        return None


def describe_pid(pid: int) -> str:
    """``pid N (command line)`` for evidence; '(gone)' when it exited meanwhile."""
    try:
        return f"pid {pid} ({shlex.join(psutil.Process(pid).cmdline())[:120]})"
    except psutil.Error:
        return f"pid {pid} (gone)"


def holders(paths: list[Path]) -> list[int]:
    """Pids of the processes that have any of ``paths`` open (processes we may not inspect are skipped)."""
    wanted = {os.path.realpath(p) for p in paths}
    pids = []
    for proc in psutil.process_iter():
        try:
            if any(f.path in wanted for f in proc.open_files()):
                pids.append(proc.pid)
        except psutil.Error:
            continue
    return pids


def orphaned_browsers(profile: Profile) -> list[psutil.Process]:
    """Browser processes whose parent is gone (or pid 1) and that this process did not start."""
    mine = {p.pid for p in psutil.Process().children(recursive=True)} | {os.getpid()}
    found = []
    for proc in psutil.process_iter(["name", "ppid", "status"]):
        info = proc.info
        if profile.browser_process not in (info["name"] or "") or proc.pid in mine:
            continue
        if info["status"] == psutil.STATUS_ZOMBIE:
            continue  # already dead; only its parent can reap it
        if info["ppid"] in (0, 1) or not psutil.pid_exists(info["ppid"]):
            found.append(proc)
    return found


def service_account(profile: Profile) -> Account | None:
    """The backend's account: the profile's service_user, the running backend's user, or the database's owner."""
    if profile.service_user:
        return account(profile.service_user)
    running = service_process(profile, "backend")
    if running is None and profile.backend_cwd:
        found = Processes().matching(profile.backend_process, profile.backend_cwd)
        running = psutil.Process(found[0].pid) if found else None
    try:
        if running is not None:
            return account(running.uids().effective)
    except psutil.Error:
        pass
    try:
        return account(os.stat(profile.db_path).st_uid)
    except OSError:
        return None
