"""Browser actions: orphaned automation browsers are ended by pid, never by name."""

from __future__ import annotations

from observe.services import describe_pid, orphaned_browsers
from remediation.actions.core import Remediation
from remediation.actions.services import end_processes


def end_orphaned_browsers(r: Remediation) -> None:
    procs = orphaned_browsers(r.profile)
    r.observe(f"orphaned '{r.profile.browser_process}' processes", lambda: [describe_pid(p.pid) for p in procs])
    if procs:
        r.step(
            f"end orphaned browsers by pid: {', '.join(str(p.pid) for p in procs)}", lambda: end_processes(procs, 5.0)
        )
