"""fix-frontend-issues: the runbook's frontend fixes, made safe (nothing deleted, no pkill)."""

from __future__ import annotations

import sys
from pathlib import Path

from remediation import safety
from remediation.safety import Remediation


def server_not_running(r: Remediation) -> None:
    """Stop a stale frontend by pid file, install dependencies when node_modules is missing, start and wait."""
    safety.stop_service(r, "frontend")
    if not (Path(r.profile.frontend_dir) / "node_modules").is_dir():
        safety.reinstall_node_modules(r)
    safety.start_service(r, "frontend")


def dependency_issues(r: Remediation) -> None:
    """Reinstall from the lockfile (kept, unlike the runbook) with the old node_modules moved aside."""
    running = safety.service_process(r.profile, "frontend") is not None
    safety.stop_service(r, "frontend")
    safety.reinstall_node_modules(r)
    if running:
        safety.start_service(r, "frontend")


def build_errors(r: Remediation) -> None:
    """Move dist/ aside, reinstall dependencies, run the build."""
    frontend = Path(r.profile.frontend_dir)
    safety.move_aside(r, frontend / "dist", "the last build stays available")
    safety.reinstall_node_modules(r)
    argv = ["npm", "run", "build"]
    r.step(f"run `npm run build` in {frontend}", lambda: safety._run(argv, r.profile.timeouts.build, str(frontend)))


def cache_issues(r: Remediation) -> None:
    """Move Vite's cache aside and restart the frontend; the machine-wide npm cache is left alone."""
    safety.move_aside(r, Path(r.profile.frontend_dir) / "node_modules" / ".vite", "Vite rebuilds it on start")
    safety.restart_service(r, "frontend")


FIXES = {
    "server_not_running": server_not_running,
    "dependency_issues": dependency_issues,
    "build_errors": build_errors,
    "cache_issues": cache_issues,
}

if __name__ == "__main__":
    sys.exit(safety.main("fix-frontend-issues", FIXES))
