"""emergency-system-recovery: the runbook's full restart, with backups verified and nothing deleted."""

from __future__ import annotations

import sys
from pathlib import Path

from observe.system import take_sample
from remediation import cli
from remediation.actions.browser import end_orphaned_browsers
from remediation.actions.core import Remediation
from remediation.actions.database import backup_database
from remediation.actions.files import archive_credentials
from remediation.actions.logs import rotate_logs
from remediation.actions.services import start_service, stop_service
from remediation.scripts import fix_type


@fix_type(
    issue_type="",
    title="System completely down",
    symptoms=[
        "System completely down",
    ],
    causes=[
        "Several components failed together",
    ],
    solutions=[
        "Stop backend and frontend by pid file or unit",
        "Report disk and memory",
        "Emergency backup: verified online database backup and a tar.gz of the credentials",
        "Rotate oversized logs (never rm)",
        "End orphaned browsers by pid",
        "Start backend, wait for health; start frontend, wait for its URL",
    ],
    unsafe_in_runbook=[
        "find /logs -size +500M -exec rm",
        "rm -rf /tmp/playwright* under running browsers",
        "cp of the live database",
    ],
)
def recover(r: Remediation) -> None:
    """Stop, report resources, verified emergency backup, rotate logs, end orphaned browsers, start and wait."""
    stop_service(r, "backend")
    stop_service(r, "frontend")
    sample = take_sample(r.profile.disk_path)
    r.observe("disk", lambda: sample.disk_detail)
    r.observe("memory", lambda: sample.memory_detail)
    backup_database(r)
    archive_credentials(r, Path(r.profile.backup_dir) / "emergency")
    rotate_logs(r)
    end_orphaned_browsers(r)
    start_service(r, "backend")
    start_service(r, "frontend")


if __name__ == "__main__":
    sys.exit(cli.main(__spec__.name))
