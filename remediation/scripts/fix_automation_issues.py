"""fix-automation-issues: browsers ended by pid, connectivity probed read-only, the queue never cleared."""

from __future__ import annotations

import sys
from datetime import timedelta

from observe.automation import Automation
from observe.browser import launch
from observe.db import Database
from observe.files import credential_store, secret_files
from observe.http import connectivity
from observe.logs import Logs
from remediation import cli
from remediation.actions.browser import end_orphaned_browsers
from remediation.actions.core import Remediation
from remediation.actions.files import fix_permissions
from remediation.scripts import fix_type


@fix_type(
    title="Browser automation failing",
    symptoms=[
        "Too many browser processes running",
        "Browser launch fails",
    ],
    causes=[
        "Orphaned browsers from crashed automation runs",
        "Missing browser binary",
    ],
    solutions=[
        "End orphaned browser processes (parent gone or pid 1) by pid",
        "Test a headless launch of browser_executable",
    ],
    unsafe_in_runbook=[
        "pkill -f chromium ends every browser on the host, including live automation runs",
        "playwright install downloads browsers: we use the system Chromium",
    ],
)
def browser_issues(r: Remediation) -> None:
    """End orphaned browsers by pid and test a headless launch of the system browser (no downloads)."""
    end_orphaned_browsers(r)
    r.observe(
        "headless launch of " + r.profile.browser_executable,
        lambda: launch(r.profile.browser_executable, r.profile.timeouts.browser).detail,
    )


@fix_type(
    title="WorkFossa unreachable",
    symptoms=[
        "WorkFossa not accessible",
        "WorkFossa connectivity error",
    ],
    causes=[
        "DNS failure",
        "Network or proxy outage",
        "WorkFossa outage",
    ],
    solutions=[
        "Resolve the host name, open a TCP connection and send an HTTPS HEAD (read-only)",
        "Escalate to networking or WorkFossa when it fails",
    ],
    unsafe_in_runbook=[],
)
def workfossa_connectivity(r: Remediation) -> None:
    """DNS, TCP and HTTPS towards WorkFossa, read-only; a failure is for networking to fix."""
    result = r.observe(
        f"connectivity to {r.profile.workfossa_url}",
        lambda: connectivity(
            r.profile.workfossa_url, r.profile.timeouts.connect, r.profile.timeouts.workfossa, r.profile.verify_tls
        ),
    )
    if not isinstance(result, dict) or any(v.startswith("failed") for v in result.values()):
        r.fail("WorkFossa is not reachable from this host: escalate to networking / WorkFossa support")


@fix_type(
    title="High automation failure rate",
    symptoms=[
        "High automation failure rate",
        "Form automation failures >50%",
    ],
    causes=[
        "WorkFossa changed its pages",
        "Orphaned browsers",
        "Expired credentials",
    ],
    solutions=[
        "Summarise recent failures from the automation logs (read-only)",
        "End orphaned browsers by pid",
        "Test a headless browser launch",
        "The automation queue is never cleared automatically: a human decides",
    ],
    unsafe_in_runbook=[
        "clear-automation-queue.py discards queued work orders",
    ],
)
def high_failure_rate(r: Remediation) -> None:
    """Summarise recent failures, end orphaned browsers, test a launch; the automation queue is left to a human."""
    window = timedelta(hours=r.profile.thresholds.automation_log_max_age_hours)
    r.observe(f"automation attempts / failures in the last {window}", lambda: automation_summary(r, window))
    browser_issues(r)
    r.observe("automation queue", lambda: "not cleared: queued work orders are data, a human decides")


def automation_summary(r: Remediation, window: timedelta) -> dict:
    """What the failure-rate checks read: the same window, through the same observer."""
    database = Database(r.profile)
    try:
        return Automation(r.profile, database, Logs(r.profile)).outcomes(window).as_dict()
    finally:
        database.close()


@fix_type(
    title="Credential storage issues",
    symptoms=[
        "Credentials directory not found",
        "No credential files found",
        "Credentials directory not readable",
    ],
    causes=[
        "Wrong permissions",
        "Files removed",
    ],
    solutions=[
        "List credential files by name, size and mode (never contents)",
        "chmod: owner read/write, no group/other bits",
    ],
    unsafe_in_runbook=[
        "ls -la prints into shared logs; contents are never read",
    ],
)
def credential_issues(r: Remediation) -> None:
    """List credential files by name, size and mode (never contents) and make them private."""
    if not r.profile.credentials_dir:
        r.observe("credentials", lambda: f"kept in table {r.profile.credentials_table!r}; nothing on disk to check")
        return
    store = credential_store(r.profile.credentials_dir)
    r.observe(f"files in {store.path}", lambda: [f"{name} {size} B mode {mode:o}" for name, size, mode in store.files])
    fix_permissions(r, [p for p in secret_files(r.profile) if store.path in (p, *p.parents)])


if __name__ == "__main__":
    sys.exit(cli.main(__spec__.name))
