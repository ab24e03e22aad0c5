"""FossaWork's logs read from the end, in both line formats.

The runbook reads whole files with ``readlines()`` to look at their last lines.
Here a file is read backwards in blocks and reading stops at the first entry
older than the window asked for, or after ``logs.tail_bytes``: the cost
follows what is read, not the file's size. Each line is parsed on its own:
a JSON object (``{"timestamp", "level", "message", ...}``) or FossaWork V2's
text format (``2026-11-28 15:31:00 | INFO | logger | func:line | message``).
Anything else is counted as malformed, never raised.
"""

from __future__ import annotations

import json
import os
import re
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from observe.files import kind, open_regular, why
from observe.profile import Profile

BLOCK = 64 * 1024
MAX_LINE = 1024 * 1024  # a longer line is malformed; it is skipped without being held in memory
MAX_CONTINUATION = 200  # lines after a text entry taken as its traceback; more are malformed
FUTURE_SLACK = timedelta(minutes=5)  # clock skew tolerated before an entry counts as "in the future"
EVER = timedelta(days=3660)  # a window reaching past any log's first line: tail_bytes bounds the read
ERROR_LEVELS = {"ERROR", "CRITICAL", "FATAL", "EXCEPTION"}
TEXT_LINE = re.compile(
    r"^(?P<ts>\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2}(?:[.,]\d+)?(?:Z|[+-]\d{2}:?\d{2})?)\s*\|\s*(?P<level>\w+)\s*\|"
    r"\s*(?P<logger>[^|]*?)\s*\|\s*(?P<where>[^|]*?)\s*\|\s?(?P<message>.*)$"
)
TS_KEYS = ("timestamp", "time", "ts", "@timestamp", "asctime")
KEPT_FIELDS = ("type", "status", "logger")  # the JSON keys is_automation_attempt / is_automation_failure read


@dataclass(slots=True)
class Entry:
    """One log entry; ``timestamp`` is aware (UTC) or None when the line has none."""

    timestamp: datetime | None
    level: str
    message: str
    fields: dict = field(default_factory=dict)

    @property
    def is_error(self) -> bool:
        """An ERROR-or-worse entry; a line without a level in an error log counts as an error."""
        return not self.level or self.level.upper() in ERROR_LEVELS


@dataclass
class Tail:
    """Entries read from the end of some files, oldest first, with what could not be read."""

    files: list[Path] = field(default_factory=list)
    entries: list[Entry] = field(default_factory=list)
    malformed: int = 0
    undated: int = 0
    future: int = 0
    bytes_read: int = 0
    lines_read: int = 0
    capped: bool = False  # stopped by tail_bytes before the window's start: counts are lower bounds
    problems: list[str] = field(default_factory=list)  # unreadable files, skipped compressed files

    def evidence(self) -> str:
        names = ", ".join(str(f) for f in self.files[:5]) + (" ..." if len(self.files) > 5 else "")
        extra = [f"{self.malformed} malformed line(s)"] if self.malformed else []
        extra += [f"{self.future} entries in the future"] if self.future else []
        extra += [f"read capped at {self.bytes_read} bytes, counts are lower bounds"] if self.capped else []
        extra += self.problems
        return f"files: {names or 'none'}" + ("; " + "; ".join(extra) if extra else "")


@dataclass
class Outcomes:
    """Automation attempts in a window and how many failed, with where they were read (logs or a table)."""

    attempts: int
    failed: int
    evidence: str

    @property
    def failure_percent(self) -> float:
        return 100 * self.failed / self.attempts if self.attempts else 0.0

    def as_dict(self) -> dict:
        return {"attempts": self.attempts, "failed": self.failed, "read": self.evidence}


@dataclass
class Activity:
    """What one log group received in a window: its newest entry there, or, when there is none, its newest entry
    at all and what its files look like (a file the application no longer writes is empty or stops growing)."""

    category: str
    globs: list[str]
    tail: Tail
    newest: Entry | None  # the newest dated entry inside the window
    before: Entry | None  # when the window is empty: the newest dated entry older than it
    files: list[tuple[Path, int, float]]  # (path, size, mtime) of every file the globs matched

    @property
    def silent(self) -> bool:
        return self.newest is None

    def evidence(self, root: Path) -> str:
        """Its files (relative to ``root``) with size and last write, and its newest entry; not its name."""
        files = "; ".join(
            f"{path.relative_to(root) if path.is_relative_to(root) else path} {size} B written "
            f"{datetime.fromtimestamp(mtime, UTC):%Y-%m-%d %H:%M:%S} UTC"
            for path, size, mtime in self.files[:5]
        ) + (f"; {len(self.files) - 5} more" if len(self.files) > 5 else "")
        if self.newest is not None:
            entry = f"newest entry at {self.newest.timestamp:%Y-%m-%d %H:%M:%S} UTC: {self.newest.message[:80]!r}"
        elif self.before is not None:
            entry = f"newest entry at {self.before.timestamp:%Y-%m-%d %H:%M:%S} UTC, before the window"
        else:
            entry = "no dated entry at all"
        problems = [f"{self.tail.malformed} malformed line(s)"] if self.tail.malformed else []
        problems += [f"{self.tail.future} entries in the future"] if self.tail.future else []
        problems += self.tail.problems
        return "; ".join([files or f"no file matches {', '.join(self.globs)}", entry, *problems])


def parse_line(raw: bytes, zone: tzinfo) -> Entry | None:
    """One line as an Entry, or None when it is neither a JSON object nor a FossaWork text line."""
    text = raw.decode("utf-8", errors="replace").strip()
    if not text:
        return None
    if text.startswith("{"):
        try:
            data = json.loads(text)
        except (ValueError, RecursionError):  # RecursionError: a line of thousands of nested brackets
            return None
        if not isinstance(data, dict):
            return None
        stamp = next((data[k] for k in TS_KEYS if isinstance(data.get(k), str)), None)
        level = data.get("level") or data.get("levelname") or data.get("severity") or ""
        message = data.get("message") or data.get("msg") or ""
        # Only the keys the checks read are kept: a window of tens of thousands of entries stays small in memory.
        kept = {key: data[key] for key in KEPT_FIELDS if key in data}
        return Entry(parse_time(stamp, zone), str(level), str(message), kept)
    match = TEXT_LINE.match(text)
    if match is None:
        return None
    return Entry(parse_time(match["ts"], zone), match["level"], match["message"], {"logger": match["logger"]})


def parse_time(stamp: str | None, zone: tzinfo) -> datetime | None:
    """An aware UTC datetime from ISO-8601 text; naive times are taken in ``zone``; None when unparseable."""
    if not stamp:
        return None
    try:
        moment = datetime.fromisoformat(stamp.strip().replace(",", "."))
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=zone)
        return moment.astimezone(UTC)
    except (ValueError, OverflowError):  # OverflowError: year 1 or 9999 moved across UTC
        return None


def zone_of(name: str) -> tzinfo:
    """The tzinfo for the profile's log_timezone ('UTC', 'local' or an IANA name)."""
    if name.upper() == "UTC":
        return UTC
    if name == "local":
        return datetime.now().astimezone().tzinfo
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return UTC


def _lines_backwards(handle, size: int, budget: int, counter: list):
    """Yield complete lines from the end of an open file, newest first, reading at most ``budget`` bytes."""
    pos, pending, skipping = size, b"", False
    while pos > 0 and counter[0] < budget:
        step = min(BLOCK, pos, budget - counter[0])
        pos -= step
        handle.seek(pos)
        block = handle.read(step)
        counter[0] += len(block)
        parts = (block + pending).split(b"\n")
        pending = parts[0]
        for line in reversed(parts[1:]):
            if skipping:
                skipping = False  # the start of the over-long line has been passed
                yield None
            else:
                yield line
        if len(pending) > MAX_LINE:
            pending, skipping = b"", True
    if pos == 0 and not skipping:
        yield pending
    elif skipping:
        yield None


class Logs:
    """The target's log files, by the globs of the profile's [logs] table."""

    def __init__(self, profile: Profile):
        self.profile = profile
        self.root = Path(profile.log_dir)
        self.zone = zone_of(profile.log_timezone)
        self.tail_bytes = profile.logs.tail_bytes

    def files(self, category: str) -> tuple[list[Path], list[str]]:
        """(existing files matching the category's globs, problems such as a missing log directory)."""
        if not self.root.is_dir():
            state = "a dangling symlink" if self.root.is_symlink() else "missing or not a directory"
            return [], [f"log directory {self.root} is {state}"]
        found, problems = set(), []
        for pattern in getattr(self.profile.logs, category):
            try:
                matches = list(self.root.glob(pattern))
            except (ValueError, NotImplementedError):  # empty or absolute pattern
                problems.append(f"glob {pattern!r} is not a pattern relative to {self.root}")
                continue
            for path in matches:
                if path.suffix in (".gz", ".bz2", ".xz", ".zst"):
                    problems.append(f"skipped rotated {path.name}")
                    continue
                try:
                    mode = path.stat().st_mode
                except OSError:
                    continue  # rotated away (or a dangling symlink) between the glob and now
                if stat.S_ISREG(mode):
                    found.add(path)
                elif not stat.S_ISDIR(mode):
                    # A FIFO, socket or device where a log should be: never opened (reading a FIFO waits forever).
                    problems.append(f"skipped {path.name}: a {kind(mode)}, not a regular file")
        return sorted(found), list(dict.fromkeys(problems))  # overlapping globs meet a file twice

    def oversized(self, limit: int) -> list[tuple[Path, int]]:
        """(file, size) of the logs of [logs] all larger than ``limit`` bytes."""
        sizes = []
        for path in self.files("all")[0]:
            try:
                sizes.append((path, path.stat().st_size))
            except OSError:
                continue  # rotated away between the glob and the stat
        return [(path, size) for path, size in sizes if size > limit]

    def automation_outcomes(self, window: timedelta) -> Outcomes:
        """The automation attempts in the last ``window`` and how many of them failed."""
        attempt = re.compile(self.profile.logs.automation_attempt)
        failure = re.compile(self.profile.logs.automation_failure)
        tail = self.since("automation", window, keep=lambda e: is_automation_attempt(e, attempt))
        failed = sum(1 for e in tail.entries if is_automation_failure(e, failure))
        return Outcomes(len(tail.entries), failed, tail.evidence())

    def since(
        self,
        category: str,
        window: timedelta,
        now: datetime | None = None,
        keep: Callable[[Entry], bool] | None = None,
        newest_only: bool = False,
    ) -> Tail:
        """Entries of the category newer than ``now - window`` (and undated ones met on the way).

        With ``keep``, only the entries it accepts are held: a check that
        counts errors in a busy log's window holds those errors, not the window's tens of thousands of lines.
        With ``newest_only``, each file is read back only to its newest entry inside the window.
        """
        now = now or datetime.now(UTC)
        cutoff = now - window
        paths, problems = self.files(category)
        tail = Tail(files=paths, problems=problems)
        for path in paths:
            self._read_file(path, cutoff, now, tail, keep, newest_only)
        tail.entries.sort(key=lambda e: e.timestamp or cutoff)
        return tail

    def _read_file(self, path: Path, cutoff: datetime, now: datetime, tail: Tail, keep, newest_only: bool) -> None:
        try:
            # Without blocking: the glob saw a regular file, but a FIFO may have taken its place since.
            handle = os.fdopen(open_regular(path), "rb")
        except OSError as exc:
            tail.problems.append(f"cannot read {why(exc)}")
            return
        with handle:
            size = os.fstat(handle.fileno()).st_size
            counter = [0]
            older_in_a_row = 0
            orphans: list[bytes] = []
            for raw in _lines_backwards(handle, size, self.tail_bytes, counter):
                tail.lines_read += 1
                if raw is None:
                    tail.malformed += 1
                    continue
                if not raw.strip():
                    continue
                entry = parse_line(raw, self.zone)
                if entry is None:
                    orphans.append(raw[:1024])
                    continue
                if orphans:
                    if "logger" in entry.fields and len(orphans) <= MAX_CONTINUATION:
                        # Continuation lines of a text entry: a traceback logged with exc_info.
                        lines = (o.decode("utf-8", errors="replace").rstrip() for o in reversed(orphans))
                        entry.message += "\n" + "\n".join(lines)
                    else:
                        tail.malformed += len(orphans)
                    orphans = []
                if entry.timestamp is None:
                    tail.undated += 1
                    continue
                if entry.timestamp < cutoff:
                    # Logs are appended in time order; a few older lines in a row mean the window has been passed.
                    older_in_a_row += 1
                    if older_in_a_row >= 20:
                        break
                    continue
                older_in_a_row = 0
                if entry.timestamp > now + FUTURE_SLACK:
                    tail.future += 1
                    continue
                if keep is None or keep(entry):
                    tail.entries.append(entry)
                    if newest_only:
                        break  # appended in time order: the first dated entry read backwards is the file's newest
            else:
                if counter[0] >= self.tail_bytes and counter[0] < size:
                    tail.capped = True
            tail.malformed += len(orphans)
            tail.bytes_read += counter[0]

    def activity(self, category: str, window: timedelta) -> Activity:
        """Whether the category received an entry in the last ``window``: its newest one there, else its newest."""
        now = datetime.now(UTC)
        tail, newest = self._newest_entry(category, window, now)
        # Only for a silent group: each file read back to its newest entry, whatever its age.
        before = None if newest is not None else self._newest_entry(category, EVER, now)[1]
        stats = []
        for path in tail.files:
            try:
                st = path.stat()
            except OSError:
                continue  # rotated away between the glob and the stat
            stats.append((path, st.st_size, st.st_mtime))
        globs = list(getattr(self.profile.logs, category))
        return Activity(category, globs, tail, newest, before, stats)

    def _newest_entry(self, category: str, window: timedelta, now: datetime) -> tuple[Tail, Entry | None]:
        # Each file read back to its newest entry only: a busy general log's window is tens of thousands of lines.
        tail = self.since(category, window, now, newest_only=True)
        return tail, (tail.entries[-1] if tail.entries else None)

    def newest(self, category: str) -> tuple[Path | None, float | None]:
        """The category's most recently written file and its age in hours (None, None when there is none)."""
        written = []
        for path in self.files(category)[0]:
            try:
                written.append((path.stat().st_mtime, path))
            except OSError:
                continue  # rotated away between the glob and the stat
        if not written:
            return None, None
        mtime, path = max(written)
        return path, (time.time() - mtime) / 3600


def is_automation_attempt(entry: Entry, attempt: re.Pattern) -> bool:
    if entry.fields.get("type") is not None and "automation" in str(entry.fields.get("type")):
        return True
    return "logger" in entry.fields and bool(attempt.search(entry.message))


def is_automation_failure(entry: Entry, failure: re.Pattern) -> bool:
    if "status" in entry.fields:
        return entry.fields.get("status") == "failed"
    return bool(failure.search(entry.message))
