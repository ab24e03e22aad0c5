"""The knowledge base (knowledge_base.json): the runbook's common issues and one entry per fix type."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

from remediation.scripts import fix_id

KB_PATH = Path(__file__).with_name("knowledge_base.json")


@cache
def load() -> dict:
    """The parsed knowledge base: {"common_issues": {...}, "fix_types": {...}}."""
    return json.loads(KB_PATH.read_text(encoding="utf-8"))


def names() -> list[str]:
    """Every entry a ``kb=`` argument may name."""
    kb = load()
    return [*kb["common_issues"], *kb["fix_types"]]


def entry(script: str, issue_type: str = "", kb: str = "") -> dict:
    """The entry for a check: the one named by ``kb``, else the fix type's own entry; with its ``id``."""
    data = load()
    name = kb or fix_id(script, issue_type)
    found = data["common_issues"].get(name) or data["fix_types"].get(name)
    if found is None:
        raise KeyError(f"no knowledge-base entry {name!r} (known: {', '.join(names())})")
    return {"id": name, **found}
