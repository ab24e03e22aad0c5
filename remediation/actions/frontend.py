"""Frontend actions: node_modules moved aside (restored if the reinstall fails), never deleted."""

from __future__ import annotations

import os
import shlex
from pathlib import Path

from remediation.actions.core import Remediation, StepFailed, run_command, stamp, unique_path


def move_aside(r: Remediation, path: Path, why: str) -> Path | None:
    """Rename ``path`` to ``path.aside-<stamp>`` next to it (kept; undo by renaming back)."""
    target = unique_path(path.parent, f"{path.name}.aside-{stamp()}")
    if not path.exists():
        return None
    return r.step(f"move {path} aside to {target.name} ({why})", lambda: (os.rename(path, target), target)[1])


def reinstall_node_modules(r: Remediation) -> None:
    """npm ci (npm install without a lockfile) with the old node_modules moved aside and restored on failure."""
    frontend = Path(r.profile.frontend_dir)
    lockfile = (frontend / "package-lock.json").exists()
    argv = ["npm", "ci" if lockfile else "install", "--no-audit", "--no-fund"]
    aside = move_aside(r, frontend / "node_modules", "kept until the reinstall succeeds")
    try:
        r.step(
            f"run `{shlex.join(argv)}` in {frontend}",
            lambda: run_command(argv, r.profile.timeouts.build * 5, str(frontend)),
        )
    except StepFailed:
        if aside is not None:
            failed = unique_path(frontend, f"node_modules.failed-{stamp()}")
            nm = frontend / "node_modules"
            r.step(
                f"restore the previous node_modules from {aside.name}",
                lambda: (nm.exists() and os.rename(nm, failed), os.rename(aside, nm))[-1],
            )
        raise
