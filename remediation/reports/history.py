"""Bounded report history: which incident reports of earlier runs to keep, and removing the rest.

A scheduled run writes ``incident-<UTC stamp>-<id>.json`` and ``.html`` every
few minutes; without pruning a five-minute timer adds 20-30 MB a day. At the
end of each run that wrote a report, :func:`prune` keeps

* the runs of the last ``days`` days, at most ``runs`` of them (newest first),
  where a streak of consecutive healthy runs of the same targets counts as its
  newest run only (the older ones say nothing the newest does not);
* always: this run, the newest run that was not healthy (per set of targets),
  and for each alert still open in ``alert-state.json`` the run that opened it
  (the newest run at or before the alert's ``since`` that has the check failing).

It removes only pairs it recognises by the writer's naming: ``latest.*``, the
alert state, the audit log and anything else in the directory are never touched.
"""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

STAMP = "%Y%m%dT%H%M%SZ"
# The writer's names (remediation.plugin: incident-<run id>.<ext>); temporary files start with a dot.
REPORT_NAME = re.compile(r"^incident-(?P<stamp>\d{8}T\d{6}Z)-(?P<suffix>[0-9a-f]{6})\.(?P<ext>json|html)$")
KEEP_ENV = "FOSSAWORK_KEEP_REPORTS"
# A five-minute timer runs 288 times a day: 200 runs (~20 MB at ~100 KB a run) hold the last ~16 hours of an
# incident that fails every run, while a healthy week collapses to a handful of files.
DEFAULT_KEEP = "7d,200"
KEEP_SYNTAX = re.compile(r"(?:(?P<days>\d+)d)(?:,(?P<runs>\d+))?|(?P<only_runs>\d+)")
MAX_DAYS = 36500


def new_run_id(started: datetime) -> str:
    """A run's id, ``<UTC stamp>-<6 hex>``: sorts by start time, and two runs in one second still differ."""
    return f"{started.astimezone(UTC):{STAMP}}-{secrets.token_hex(3)}"


@dataclass(frozen=True)
class Keep:
    """How much history to keep: runs younger than ``days``, at most ``runs`` of them; None means no limit."""

    days: int | None
    runs: int | None

    def __str__(self) -> str:
        parts = [f"{self.days}d" if self.days else "", str(self.runs) if self.runs else ""]
        return ",".join(p for p in parts if p) or "all"


def parse_keep(text: str, source: str) -> Keep:
    """``7d`` (days), ``200`` (runs), ``7d,200`` (both) or ``all``; anything else is a ValueError naming ``source``."""
    value = "".join(text.split()).lower()
    if value == "all":
        return Keep(None, None)
    match = KEEP_SYNTAX.fullmatch(value)
    days = int(match["days"]) if match and match["days"] else None
    runs = int(match["runs"] or match["only_runs"]) if match and (match["runs"] or match["only_runs"]) else None
    if match is None or not 0 < (days if days is not None else 1) <= MAX_DAYS or runs == 0:
        raise ValueError(
            f"{source}: {text!r} is not a history limit; use days ('7d', at most {MAX_DAYS}), runs ('200'), "
            f"both ('{DEFAULT_KEEP}') or 'all'"
        )
    return Keep(days, runs)


@dataclass
class Run:
    """One earlier run in the report directory: its files and, when its JSON is readable, what it found."""

    run_id: str
    started: datetime
    files: list[Path] = field(default_factory=list)
    written: float = 0.0  # newest mtime of its files: orders two runs started in the same second
    severity: str | None = None  # None: no readable JSON (a run still writing, or a damaged file)
    targets: tuple[str, ...] = ()
    failing: frozenset[tuple[str, str]] = frozenset()  # (target, check id)

    @property
    def healthy(self) -> bool:
        return self.severity == "healthy"


def runs_in(report_dir: Path) -> list[Run]:
    """The runs whose reports are in ``report_dir``, oldest first."""
    found: dict[str, Run] = {}
    try:
        entries = list(report_dir.iterdir())
    except OSError:
        return []
    for path in entries:
        match = REPORT_NAME.match(path.name)
        if match is None or not path.is_file():
            continue
        run_id = f"{match['stamp']}-{match['suffix']}"
        if run_id not in found:
            started = datetime.strptime(match["stamp"], STAMP).replace(tzinfo=UTC)
            found[run_id] = Run(run_id, started)
        found[run_id].files.append(path)
    for run in found.values():
        run.written = max(_mtime(path) for path in run.files)
        _read_summary(run, report_dir / f"incident-{run.run_id}.json")
    return sorted(found.values(), key=lambda r: (r.started, r.written))


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:  # removed meanwhile by a concurrent run
        return 0.0


def _read_summary(run: Run, path: Path) -> None:
    try:
        incident = json.loads(path.read_text(encoding="utf-8"))
        run.severity = str(incident["severity"])
        run.targets = tuple(sorted(t["name"] for t in incident["targets"]))
        run.failing = frozenset((f["target"], f["id"]) for f in incident["failures"])
    except (OSError, ValueError, KeyError, TypeError):
        run.severity = None  # unknown: never collapsed as healthy, still bounded by age and count


def to_keep(runs: list[Run], keep: Keep, now: datetime, current: str, open_alerts: dict) -> set[str]:
    """The run ids to keep among ``runs`` (oldest first); see the module docstring for the rules."""
    protected = {current}
    by_targets: dict[tuple[str, ...], list[Run]] = {}
    for run in runs:
        by_targets.setdefault(run.targets, []).append(run)
    candidates = []
    for series in by_targets.values():
        # The newest run known not to be healthy (an unreadable report is not known to be an incident).
        unhealthy = [r for r in series if r.severity not in (None, "healthy")]
        if unhealthy:
            protected.add(unhealthy[-1].run_id)
        # A healthy run followed by another healthy run of the same targets is folded into the later one.
        nexts = [*series[1:], None]
        candidates += [r for r, after in zip(series, nexts, strict=True) if not (r.healthy and after and after.healthy)]
    for alert in open_alerts.values():
        opener = _opener(runs, alert)
        if opener is not None:
            protected.add(opener.run_id)
    oldest = now - timedelta(days=keep.days) if keep.days is not None else None
    newest_first = sorted(candidates, key=lambda r: (r.started, r.written), reverse=True)
    recent = [r for r in newest_first if oldest is None or r.started >= oldest]
    return protected | {r.run_id for r in recent[: keep.runs]}


def _opener(runs: list[Run], alert: dict) -> Run | None:
    """The run that opened an alert: the newest run at or before its ``since`` with the check failing."""
    try:
        since = datetime.fromisoformat(str(alert["since"])).astimezone(UTC)
        failing = (alert["target"], alert["check"])
    except (KeyError, TypeError, ValueError):
        return None
    matching = [r for r in runs if r.started <= since and failing in r.failing]
    return matching[-1] if matching else None


def prune(report_dir: Path, keep: Keep, now: datetime, current: str, open_alerts: dict) -> list[Run]:
    """Remove the report files of the runs :func:`to_keep` does not keep; returns those runs."""
    runs = runs_in(report_dir)
    kept = to_keep(runs, keep, now, current, open_alerts)
    removed = [run for run in runs if run.run_id not in kept]
    for run in removed:
        for path in run.files:
            path.unlink(missing_ok=True)  # a concurrent run may have pruned it first
    return removed
