"""Service actions: stop by systemd unit or pid file (never by a name pattern), start, wait until healthy."""

from __future__ import annotations

import signal
import subprocess
import time

import psutil

from observe import profile as profiles
from observe.http import Http
from observe.services import describe_pid, pid_file, service_process, systemd_unit
from remediation.actions.core import Remediation, StepFailed, run_command
from remediation.actions.logs import preserve_evidence

STOP_GRACE_SECONDS = 10.0


def _running(p: psutil.Process) -> bool:
    """Whether the process still runs. One that has exited is gone even while it waits, a zombie, for its parent
    (the service manager, or whoever started it) to reap it: psutil.wait_procs waits on those until its timeout."""
    try:
        p.wait(timeout=0)  # reaps it when it is this process's own child
        return False
    except psutil.TimeoutExpired:
        pass
    except psutil.Error:
        return False
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _wait_ended(procs: list[psutil.Process], timeout: float) -> list[psutil.Process]:
    """Wait at most ``timeout`` seconds for the processes to exit; those still running."""
    deadline = time.monotonic() + timeout
    while True:
        alive = [p for p in procs if _running(p)]
        if not alive or time.monotonic() >= deadline:
            return alive
        time.sleep(0.05)


def end_processes(procs: list[psutil.Process], grace: float = STOP_GRACE_SECONDS) -> str:
    """SIGTERM, then SIGKILL after ``grace`` seconds, to exactly these processes."""
    for p in procs:
        try:
            p.send_signal(signal.SIGTERM)
        except psutil.Error:
            pass
    alive = _wait_ended(procs, grace)
    for p in alive:
        try:
            p.kill()
        except psutil.Error:
            pass
    _wait_ended(alive, grace)
    return f"ended pids {', '.join(str(p.pid) for p in procs)}" + (f" ({len(alive)} needed SIGKILL)" if alive else "")


def stop_service(r: Remediation, which: str) -> None:
    """Stop the backend or frontend by systemd unit or pid file; nothing else is ever signalled.

    The backend truncates its logs when it starts again: they are copied into the incident's folder first.
    """
    if which == "backend":
        preserve_evidence(r)
    unit = systemd_unit(r.profile, which)
    if unit:
        r.step(f"systemctl stop {unit}", lambda: run_command(["systemctl", "stop", unit], 60))
        return
    proc = service_process(r.profile, which)
    if proc is None:
        r.observe(f"{which} process from {pid_file(r.profile, which) or 'pid_dir (not set)'}", lambda: "not running")
        return
    family = [*proc.children(recursive=True), proc]
    r.step(
        f"stop the {which} {describe_pid(proc.pid)} from {pid_file(r.profile, which)} and its children",
        lambda: end_processes(family),
    )


def health_url(profile: profiles.Profile, which: str) -> str:
    if which == "backend":
        return profile.api_url.rstrip("/") + profile.endpoints.health
    return profile.frontend_url


def wait_healthy(profile: profiles.Profile, which: str, timeout: float = 45.0) -> str:
    """Poll the service's URL until it answers 200, at most ``timeout`` seconds."""
    url, deadline, last = health_url(profile, which), time.monotonic() + timeout, "no answer"
    http = Http(profile.timeouts.connect, profile.timeouts.read, profile.verify_tls)
    try:
        while time.monotonic() < deadline:
            answer = http.request("GET", url)
            if answer.status == 200:
                return f"{url} answered 200"
            last = answer.describe()
            time.sleep(0.25)
    finally:
        http.close()
    raise StepFailed(f"{url} not healthy after {timeout:.0f} s (last: {last})")


def start_service(r: Remediation, which: str) -> None:
    """Start by systemd unit or the profile's start command, then wait (bounded) for its health URL."""
    unit = systemd_unit(r.profile, which)
    command = r.profile.values[f"{which}_start"]
    if unit:
        r.step(f"systemctl start {unit}", lambda: run_command(["systemctl", "start", unit], 60))
    elif command:
        r.step(f"start the {which}: {command}", lambda: _spawn(r.profile, which, command))
    else:
        r.fail(f"cannot start the {which}: the profile has no {which}_unit under systemd and no {which}_start command")
    r.step(f"wait for {health_url(r.profile, which)} to answer 200", lambda: wait_healthy(r.profile, which))


def restart_service(r: Remediation, which: str) -> None:
    stop_service(r, which)
    start_service(r, which)


def _spawn(profile: profiles.Profile, which: str, command: str) -> str:
    """Run the start command detached; record its pid when the command does not write a pid file itself."""
    cwd = profile.values[f"{which}_cwd"] or None
    proc = subprocess.Popen(
        command,
        shell=True,
        cwd=cwd,
        start_new_session=True,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    path = pid_file(profile, which)
    time.sleep(0.5)
    if proc.poll() not in (None, 0):
        raise StepFailed(f"start command exited with {proc.returncode}")
    if path and proc.poll() is None and service_process(profile, which) is None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"{proc.pid}\n")
    return f"pid {proc.pid}"
