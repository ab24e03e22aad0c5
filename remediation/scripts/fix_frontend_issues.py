"""fix-frontend-issues: the runbook's frontend fixes, made safe (nothing deleted, no pkill)."""

from __future__ import annotations

import sys
from pathlib import Path

from observe.frontend import Frontend
from observe.services import service_process
from remediation import cli
from remediation.actions.core import Remediation, run_command
from remediation.actions.frontend import move_aside, reinstall_node_modules
from remediation.actions.services import restart_service, start_service, stop_service
from remediation.scripts import fix_type


@fix_type(
    title="Frontend server not running",
    symptoms=[
        "Page not loading",
        "Cannot connect to frontend server",
    ],
    causes=[
        "Dev server crashed",
        "Missing node_modules",
        "Port 5173 in use",
    ],
    solutions=[
        "Stop a stale frontend by its pid file or unit",
        "Install dependencies when node_modules is missing (npm ci)",
        "Start the frontend and wait for its URL",
    ],
    unsafe_in_runbook=[
        'pkill -f vite / "npm run dev" ends every Vite server on the host',
    ],
)
def server_not_running(r: Remediation) -> None:
    """Stop a stale frontend by pid file, install dependencies when node_modules is missing, start and wait."""
    stop_service(r, "frontend")
    if not Frontend(r.profile).has_node_modules():
        reinstall_node_modules(r)
    start_service(r, "frontend")


@fix_type(
    title="Frontend dependency issues",
    symptoms=[
        "Missing npm dependencies",
        "npm dependency issues detected",
        "Module not found errors",
    ],
    causes=[
        "node_modules missing or out of date with the lockfile",
    ],
    solutions=[
        "Move node_modules aside",
        "npm ci (npm install when there is no lockfile)",
        "Restore the old node_modules when the install fails",
    ],
    unsafe_in_runbook=[
        "rm package-lock.json throws away the pinned versions: the lockfile is kept",
    ],
)
def dependency_issues(r: Remediation) -> None:
    """Reinstall from the lockfile (kept, unlike the runbook) with the old node_modules moved aside."""
    running = service_process(r.profile, "frontend") is not None
    stop_service(r, "frontend")
    reinstall_node_modules(r)
    if running:
        start_service(r, "frontend")


@fix_type(
    title="Frontend build errors",
    symptoms=[
        "npm run build fails",
        "TypeScript compilation errors found",
    ],
    causes=[
        "Stale dist/",
        "Missing or mismatched dependencies",
        "Source errors",
    ],
    solutions=[
        "Move dist/ aside",
        "Reinstall dependencies from the lockfile",
        "npm run build and read its output",
    ],
    unsafe_in_runbook=[
        "rm -rf dist/ removes the last good build: it is moved aside",
    ],
)
def build_errors(r: Remediation) -> None:
    """Move dist/ aside, reinstall dependencies, run the build."""
    frontend = Path(r.profile.frontend_dir)
    move_aside(r, frontend / "dist", "the last build stays available")
    reinstall_node_modules(r)
    argv = ["npm", "run", "build"]
    r.step(f"run `npm run build` in {frontend}", lambda: run_command(argv, r.profile.timeouts.build, str(frontend)))


@fix_type(
    title="Frontend stale caches",
    symptoms=[
        "UI shows old code",
        "Vite optimised dependencies out of date",
    ],
    causes=[
        "Stale node_modules/.vite cache",
    ],
    solutions=[
        "Move node_modules/.vite aside",
        "Restart the frontend by pid file or unit",
    ],
    unsafe_in_runbook=[
        "npm cache clean --force empties the machine-wide npm cache for every project: not needed",
    ],
)
def cache_issues(r: Remediation) -> None:
    """Move Vite's cache aside and restart the frontend; the machine-wide npm cache is left alone."""
    move_aside(r, Path(r.profile.frontend_dir) / "node_modules" / ".vite", "Vite rebuilds it on start")
    restart_service(r, "frontend")


if __name__ == "__main__":
    sys.exit(cli.main(__spec__.name))
