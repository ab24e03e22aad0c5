"""The JSON incident report writer (``incident.schema.json`` describes its shape)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

SCHEMA_PATH = Path(__file__).with_name("incident.schema.json")


@pytest.hookimpl
def pytest_fossawork_write_report(config, incident, report_dir, stem):
    """Write ``stem.json``; O_EXCL: an existing report is never overwritten."""
    path = Path(report_dir) / f"{stem}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(incident, f, indent=2)
        f.write("\n")
    return path
