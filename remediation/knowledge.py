"""The knowledge base: the runbook's common issues (knowledge_base.json) and one entry per fix type (``@fix_type``)."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

from remediation.scripts import fix_id, registry

KB_PATH = Path(__file__).with_name("knowledge_base.json")


@cache
def load() -> dict:
    """The parsed knowledge base: {"common_issues": {...}, "fix_types": {...}}."""
    return json.loads(KB_PATH.read_text(encoding="utf-8"))


def fix_types() -> dict[str, dict]:
    """The entry of every fix type, by fix id: declared with each fix (``@fix_type``), plus ``escalate``."""
    found = {fix.id: fix.kb for types in registry().values() for fix in types.values()}
    return {**found, **load()["fix_types"]}


def names() -> list[str]:
    """Every entry a ``kb=`` argument may name."""
    return [*load()["common_issues"], *fix_types()]


def entry(script: str, issue_type: str = "", kb: str = "") -> dict:
    """The entry for a check: the one named by ``kb``, else the fix type's own entry; with its ``id``."""
    data = load()
    name = kb or fix_id(script, issue_type)
    found = data["common_issues"].get(name) or fix_types().get(name)
    if found is None:
        raise KeyError(f"no knowledge-base entry {name!r} (known: {', '.join(names())})")
    return {"id": name, **found}
