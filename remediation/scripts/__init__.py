"""The runbook's fix scripts as Python modules: ``python3 -m remediation.scripts.<name> ISSUE_TYPE``.

Each fix type is declared once, where it is implemented: ``@fix_type(...)`` on
its function registers the script (from the module's name), the issue type
(the function's name) and its knowledge-base entry. :func:`scripts` imports
the modules of this package and returns what registered; the catalog validates
``@pytest.mark.fix`` against it and the plugin builds fix commands from it.
"""

from __future__ import annotations

import importlib
import pkgutil
import shlex
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from typing import NamedTuple

# Not a script: the runbook has no fix, a human decides. Reported, never acted on.
ESCALATE = "escalate"


@dataclass(frozen=True)
class FixType:
    """One registered fix: its script, issue type ('' for a script that takes none), action and knowledge."""

    script: str
    issue_type: str
    run: Callable = field(repr=False, compare=False)
    kb: dict = field(repr=False, compare=False)

    @property
    def id(self) -> str:
        return fix_id(self.script, self.issue_type)


_REGISTRY: dict[str, dict[str, FixType]] = {}


def script_name(module: str) -> str:
    """``remediation.scripts.fix_backend_issues`` -> ``fix-backend-issues`` (the runbook's name, without .sh)."""
    return module.rsplit(".", 1)[-1].replace("_", "-")


def fix_type(
    *,
    title: str,
    symptoms: list[str],
    causes: list[str],
    solutions: list[str],
    unsafe_in_runbook: list[str],
    issue_type: str | None = None,
):
    """Register the decorated ``fn(r: Remediation)`` as a fix of its module's script, with its knowledge entry."""

    def register(fn: Callable) -> Callable:
        module = sys.modules[fn.__module__]
        # Run as `python -m`, the module is __main__; its spec still carries the real name.
        name = getattr(module.__spec__, "name", None) or fn.__module__
        script, kind = script_name(name), fn.__name__ if issue_type is None else issue_type
        kb = {
            "title": title,
            "symptoms": list(symptoms),
            "causes": list(causes),
            "solutions": list(solutions),
            "unsafe_in_runbook": list(unsafe_in_runbook),
        }
        _REGISTRY.setdefault(script, {})[kind] = FixType(script, kind, fn, kb)
        return fn

    return register


@cache
def _load() -> None:
    for info in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{info.name}")


def registry() -> dict[str, dict[str, FixType]]:
    """Every registered fix type, by script then issue type."""
    _load()
    return _REGISTRY


def scripts() -> dict[str, tuple[str, ...]]:
    """Script name -> its issue types (("",) for a script that takes none)."""
    return {script: tuple(types) for script, types in registry().items()}


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
        known = scripts()
        if self.script not in known:
            return f"unknown fix script {self.script!r} (known: {', '.join([*known, ESCALATE])})"
        types = known[self.script]
        if self.issue_type not in types:
            if types == ("",):
                return f"{self.script} takes no issue type, got {self.issue_type!r}"
            return f"{self.script} has no issue type {self.issue_type!r} (known: {', '.join(types)})"
        return None
