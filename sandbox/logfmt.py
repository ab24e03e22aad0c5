"""Log line formats of the two layouts (stdlib only; shared by the app, the seeder and the faults)."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path

# Where each kind of log lives, relative to <root>/logs. "{date}" is the local date (v2 only).
FILES = {
    "runbook": {
        "backend_errors": "backend/backend-errors-latest.jsonl",
        "errors": "errors/backend-errors.jsonl",
        "general": "backend/backend-general.jsonl",
        "api": "backend/backend-api.jsonl",
        "automation": "automation/automation-jobs.jsonl",
        "frontend": None,
        "sessions": None,
    },
    # FossaWork V2 as deployed writes its errors and its request lines to the general log; its errors log is
    # opened at start and stays empty, and its automation outcomes are rows of automation_jobs, not lines.
    "v2": {
        "backend_errors": "backend/backend-general-{date}.jsonl",
        "errors": "errors/backend-errors-{date}.jsonl",
        "general": "backend/backend-general-{date}.jsonl",
        "api": "backend/backend-general-{date}.jsonl",
        "automation": "automation/backend-automation-{date}.jsonl",
        "frontend": "frontend/frontend-{date}.jsonl",
        "sessions": "sessions/sessions-{date}.jsonl",
    },
}

# The kinds the running backend writes its own errors to.
ERROR_KINDS = {"runbook": ("backend_errors", "errors"), "v2": ("backend_errors",)}

# The files the v2 backend opens (truncating them) each time it starts, as its logging handlers do.
OPENED_AT_START = ("general", "errors", "automation")

GLOBS = {
    "runbook": {
        "backend_errors": ["backend/backend-errors-latest.jsonl"],
        "errors": ["errors/*.jsonl"],
        "automation": ["automation/*.jsonl"],
        "startup": ["backend/*.jsonl"],
        "all": ["**/*.jsonl"],
    },
    "v2": {
        "backend_errors": ["backend/backend-general-*.jsonl"],
        "errors": ["backend/backend-general-*.jsonl", "errors/*.jsonl"],
        "automation": ["automation/*.jsonl"],
        "startup": ["backend/backend-general-*.jsonl"],
        "all": ["**/*.jsonl"],
    },
}

# The groups whose logs the running backend writes all the time ([logs] active): v2's general log gets its
# start-up and request lines (and is every group but automation); the runbook layout's backend/*.jsonl holds
# its general and request logs. The error logs are empty when all is well.
ACTIVE = {"runbook": ("startup",), "v2": ("backend_errors", "errors", "startup")}


APP_ERROR_LOGGER = "fossawork.api.errors"  # the logger of errors the running app writes


def parse(text: str) -> tuple[datetime | None, str]:
    """(time, logger) of one log line of either format; (None, "") when unparseable."""
    text = text.strip()
    try:
        if text.startswith("{"):
            obj = json.loads(text)
            stamp = obj.get("timestamp", "").replace("Z", "+00:00")
            return datetime.fromisoformat(stamp), str(obj.get("logger", ""))
        parts = [p.strip() for p in text.split(" | ")]
        return datetime.strptime(parts[0], "%Y-%m-%d %H:%M:%S").astimezone(), parts[2]
    except (ValueError, IndexError, AttributeError):
        return None, ""


def now() -> datetime:
    return datetime.now(UTC)


def log_path(log_dir: str | Path, layout: str, kind: str, when: datetime | None = None) -> Path | None:
    rel = FILES[layout][kind]
    if rel is None:
        return None
    when = when or now()
    return Path(log_dir) / rel.format(date=when.astimezone().strftime("%Y-%m-%d"))


def json_line(when: datetime, level: str, logger: str, message: str, **extra) -> str:
    stamp = when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"
    return json.dumps({"timestamp": stamp, "level": level, "logger": logger, "message": message, **extra})


def text_line(when: datetime, level: str, logger: str, where: str, message: str) -> str:
    local = when.astimezone().strftime("%Y-%m-%d %H:%M:%S")
    return f"{local} | {level:<8} | {logger:<20} | {where:<20} | {message}"


def automation_line(when: datetime, job_id: int, ok: bool, reason: str = "") -> str:
    """One automation outcome as the runbook layout logs it (FossaWork V2 keeps them as automation_jobs rows)."""
    stamp = when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"
    return json.dumps(
        {
            "timestamp": stamp,
            "type": "automation_job",
            "status": "completed" if ok else "failed",
            "job_id": job_id,
            "message": f"Automation job {job_id} " + ("completed" if ok else f"failed: {reason}"),
        }
    )


def line(layout: str, when: datetime, level: str, logger: str, message: str, where: str = "handle:120") -> str:
    if layout == "runbook":
        return json_line(when, level, logger, message)
    return text_line(when, level, logger, where, message)


def append(path: Path, lines: list[str]) -> None:
    """Append lines to a log file (opened per write, like a rotating handler that was just reopened)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as f:
        f.write("".join(ln + "\n" for ln in lines))


def write_lines(log_dir: str | Path, layout: str, kind: str, entries: list[tuple[datetime, str]]) -> list[Path]:
    """Append (time, line) entries to the file of their kind, split per date for dated files."""
    by_file: dict[Path, list[str]] = {}
    for when, text in sorted(entries, key=lambda e: e[0]):
        path = log_path(log_dir, layout, kind, when)
        by_file.setdefault(path, []).append(text)
    for path, lines in by_file.items():
        append(path, lines)
    return list(by_file)


def set_mtime(path: Path, when: datetime) -> None:
    ts = when.timestamp()
    os.utime(path, (ts, ts))
