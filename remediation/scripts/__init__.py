"""The runbook's fix scripts as Python modules: ``python -m remediation.scripts.<name> ISSUE_TYPE``.

This module is the one list of scripts and issue types; the catalog validates
``@pytest.mark.fix`` against it and the plugin builds fix commands from it.
"""

from __future__ import annotations

import shlex
from typing import NamedTuple

# Script name (the runbook's, without .sh) -> its issue types; ("",) means "takes no issue type".
SCRIPTS: dict[str, tuple[str, ...]] = {
    "fix-backend-issues": ("api_errors", "database_issues", "performance_issues", "memory_issues"),
    "fix-frontend-issues": ("server_not_running", "dependency_issues", "build_errors", "cache_issues"),
    "fix-database-issues": ("vacuum", "permissions", "database_locked", "reindex"),
    "recover-corrupted-database": ("recover",),
    "resolve-performance-issues": ("high_cpu", "high_memory", "slow_database", "disk_io"),
    "fix-automation-issues": ("browser_issues", "workfossa_connectivity", "high_failure_rate", "credential_issues"),
    "emergency-system-recovery": ("",),
}
# Not a script: the runbook has no fix, a human decides. Reported, never acted on.
ESCALATE = "escalate"


def module_name(script: str) -> str:
    """The importable module of a script (``fix-backend-issues`` -> ``remediation.scripts.fix_backend_issues``)."""
    return "remediation.scripts." + script.replace("-", "_")


def fix_id(script: str, issue_type: str = "") -> str:
    """The id of one fix (and of its knowledge-base entry): ``script/issue_type``, or the script alone."""
    return f"{script}/{issue_type}" if issue_type else script


def command(script: str, issue_type: str, target_file: str, target: str, execute: bool = True) -> str | None:
    """The command line an engineer can paste to run one fix; None for ``escalate``."""
    if script == ESCALATE:
        return None
    argv = ["python3", "-m", module_name(script)]  # what a plain Debian host has on PATH
    argv += [issue_type] if issue_type else []
    argv += ["--target-file", str(target_file), "--target", target]
    argv += ["--execute"] if execute else []
    return shlex.join(argv)


class Fix(NamedTuple):
    """One runbook fix, as named by ``@pytest.mark.fix``; a tuple so it is hashable and crosses xdist as-is."""

    script: str
    issue_type: str = ""
    kb: str = ""

    @property
    def id(self) -> str:
        """``script/issue_type``: what is run (kb does not change it)."""
        return fix_id(self.script, self.issue_type)

    def problem(self) -> str | None:
        """Why this fix cannot be run, or None when script and issue type are known."""
        if self.script == ESCALATE:
            return None if not self.issue_type else f"'escalate' takes no issue type, got {self.issue_type!r}"
        if self.script not in SCRIPTS:
            return f"unknown fix script {self.script!r} (known: {', '.join([*SCRIPTS, ESCALATE])})"
        types = SCRIPTS[self.script]
        if self.issue_type not in types:
            if types == ("",):
                return f"{self.script} takes no issue type, got {self.issue_type!r}"
            return f"{self.script} has no issue type {self.issue_type!r} (known: {', '.join(types)})"
        return None
