"""fix-automation-issues: browsers ended by pid, connectivity probed read-only, the queue never cleared."""

from __future__ import annotations

import re
import sys
from pathlib import Path

from remediation import safety
from remediation.safety import Remediation


def browser_issues(r: Remediation) -> None:
    """End orphaned browsers by pid and test a headless launch of the system browser (no downloads)."""
    safety.end_orphaned_browsers(r)
    r.observe("headless launch of " + r.profile.browser_executable, lambda: safety.browser_launch(r.profile))


def workfossa_connectivity(r: Remediation) -> None:
    """DNS, TCP and HTTPS towards WorkFossa, read-only; a failure is for networking to fix."""
    result = r.observe(f"connectivity to {r.profile.workfossa_url}", lambda: safety.connectivity(r.profile))
    if not isinstance(result, dict) or any(v.startswith("failed") for v in result.values()):
        r.fail("WorkFossa is not reachable from this host: escalate to networking / WorkFossa support")


def _failure_summary(r: Remediation) -> dict[str, int]:
    attempt, failure = re.compile(r.profile.logs.automation_attempt), re.compile(r.profile.logs.automation_failure)
    attempts = failures = 0
    for pattern in r.profile.logs.automation:
        for path in Path(r.profile.log_dir).glob(pattern):
            with open(path, "rb") as f:
                f.seek(max(0, path.stat().st_size - r.profile.logs.tail_bytes))
                for line in f.read().decode(errors="replace").splitlines():
                    if '"status"' in line or attempt.search(line):
                        attempts += 1
                        failures += bool('"failed"' in line or failure.search(line))
    return {"attempts": attempts, "failures": failures}


def high_failure_rate(r: Remediation) -> None:
    """Summarise recent failures, end orphaned browsers, test a launch; the automation queue is left to a human."""
    r.observe("automation attempts / failures in the log tails", lambda: _failure_summary(r))
    browser_issues(r)
    r.observe("automation queue", lambda: "not cleared: queued work orders are data, a human decides")


def _describe(path: Path) -> str:
    st = path.stat()
    return f"{path.name} {st.st_size} B mode {st.st_mode & 0o777:o}"


def credential_issues(r: Remediation) -> None:
    """List credential files by name, size and mode (never contents) and make them private."""
    creds = Path(r.profile.credentials_dir) if r.profile.credentials_dir else None
    if creds is None:
        r.observe("credentials", lambda: f"kept in table {r.profile.credentials_table!r}; nothing on disk to check")
        return
    r.observe(f"files in {creds}", lambda: [_describe(p) for p in sorted(creds.iterdir())])
    paths = [creds, *sorted(creds.rglob("*"))] if creds.is_dir() else [creds]
    safety.fix_permissions(r, paths)


FIXES = {
    "browser_issues": browser_issues,
    "workfossa_connectivity": workfossa_connectivity,
    "high_failure_rate": high_failure_rate,
    "credential_issues": credential_issues,
}

if __name__ == "__main__":
    sys.exit(safety.main("fix-automation-issues", FIXES))
