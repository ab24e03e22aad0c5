"""Automation outcomes, wherever the application records them: its automation logs, or a database table.

FossaWork V2 as deployed keeps each job's outcome as a row of ``automation_jobs`` and writes no outcome
lines; its automation log is recreated empty at every start, so a fresh log file says nothing about jobs.
With ``[automation] table`` set, outcomes and their recency come from that table (read-only, newest rows
first, bounded); otherwise from the automation logs.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from observe.db import Database, DatabaseUnavailable
from observe.logs import Logs, Outcomes, parse_time

MAX_ROWS = 100_000  # newest rows read per probe: a month of one job a minute


class Automation:
    """The target's automation outcomes, from the table the profile names or from the automation logs."""

    def __init__(self, profile, db: Database, logs: Logs):
        self.profile = profile
        self.db = db
        self.logs = logs
        self.table = profile.automation.table

    @property
    def source(self) -> str:
        return f"table {self.table!r} of {self.db.path}" if self.table else "the automation logs"

    def outcomes(self, window: timedelta, now: datetime | None = None) -> Outcomes:
        """Finished jobs in the last ``window`` and how many failed; DatabaseUnavailable names a table problem."""
        if not self.table:
            return self.logs.automation_outcomes(window)
        now = now or datetime.now(UTC)
        spec = self.profile.automation
        finished, failed = set(spec.finished_statuses), set(spec.failed_statuses)
        attempts = failures = 0
        for status, when in self._rows():
            if when is None or when < now - window:
                continue
            if status in finished:
                attempts += 1
                failures += status in failed
        return Outcomes(attempts, failures, f"{self.source}, column {spec.time_column} in the last {window}")

    def newest(self) -> datetime | None:
        """When the newest job finished (None when there is none); from the table or the newest log's mtime."""
        if not self.table:
            path, age = self.logs.newest("automation")
            return None if age is None else datetime.now(UTC) - timedelta(hours=age)
        return max((when for _, when in self._rows() if when is not None), default=None)

    def _rows(self) -> list[tuple[str, datetime | None]]:
        spec = self.profile.automation
        if self.table not in self.db.tables():
            raise DatabaseUnavailable(f"{self.db.path} has no table {self.table!r} ([automation] table)")
        status, when, table = (ident(n) for n in (spec.status_column, spec.time_column, self.table))
        rows = self.db.query(f"SELECT {status}, {when} FROM {table} ORDER BY rowid DESC LIMIT {MAX_ROWS}")
        return [(str(status), parse_time(str(when) if when is not None else None, UTC)) for status, when in rows]


def ident(name: str) -> str:
    """``name`` as a quoted SQL identifier (a profile's column name cannot end the quote)."""
    return '"' + name.replace('"', '""') + '"'
