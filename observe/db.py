"""The SQLite database, observed read-only and within budgets.

The file is opened read-only (:func:`connect_ro`), so no check can create a
missing database (the runbook's ``sqlite3.connect`` does), write to it, or take
a write lock; and it is opened so that nothing beside it is created, changed or
removed either, in any journal mode (see :func:`read_only_uri`). Long scans
(quick_check, integrity_check, foreign_key_check) run under a time budget
enforced by interrupting SQLite when it passes; running out of budget is
reported as such, never as a pass. Lock detection asks the kernel who holds
SQLite's lock bytes (``F_GETLK``) instead of taking the write lock itself. A
database path (or a -wal / -shm beside it) that is a FIFO, socket or device
is refused at once: SQLite would block opening it.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import sqlite3
import stat
import struct
import threading
import time
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from observe.files import NotARegularFile, kind, open_regular, read_head, sidecars, why
from observe.processes import command_line
from observe.profile import Profile

SQLITE_HEADER = b"SQLite format 3\x00"
# SQLite's rollback-journal lock bytes (os_unix.c): PENDING, RESERVED, then the SHARED range.
PENDING_BYTE = 0x40000000
RESERVED_BYTE = PENDING_BYTE + 1
SHARED_FIRST = PENDING_BYTE + 2
SHARED_SIZE = 510
WAL_WRITE_LOCK = 120  # byte of the -shm file a WAL writer locks
WAL_FORMAT = 2  # header bytes 18 and 19 (file format write / read version): 1 rollback journal, 2 WAL
_FLOCK = "hh4xqqi4x"  # struct flock on Linux x86_64 / aarch64


class BudgetExceeded(Exception):
    """A scan stopped by its time budget: inconclusive, not a pass."""


class DatabaseUnavailable(Exception):
    """The database cannot be opened or queried; str() is one line naming the cause."""


class DatabaseLocked(DatabaseUnavailable):
    """A query waited for the lock timeout on another process's lock: locked, not broken."""

    reported_by = "test_database_is_not_locked"  # the check that names the lock and its holder


@dataclass
class Scan:
    """The result of a PRAGMA scan: its lines (['ok'] when clean) and time taken."""

    lines: list
    elapsed: float

    def summary(self, shown: int = 3) -> str:
        """'N problems, first: ...' for integrity-style scans, whose rows may hold several newline-separated lines."""
        problems = [line for row in self.lines for line in str(row).splitlines() if line.strip()]
        first = "; ".join(problems[:shown])
        return f"{len(problems)} problem line(s), first: {first}" if problems else "no rows"


@dataclass
class LockHolder:
    pid: int
    lock: str  # RESERVED, PENDING, EXCLUSIVE or WAL-WRITE
    held_for: float
    command: str = ""  # the holder's command line, read when the lock was found held

    def describe(self) -> str:
        """'pid 812 (python3 worker.py): it holds the WAL-WRITE lock for 5.0 s'."""
        who = f"pid {self.pid}" + (f" ({self.command[:200]})" if self.command else "")
        return f"{who}: it holds the {self.lock} lock for {self.held_for:.1f} s"


class Database:
    """One SQLite file, opened read-only on first query and closed at the end of the run."""

    def __init__(self, profile: Profile):
        self.path = Path(profile.db_path)
        self.lock_timeout = profile.timeouts.lock
        self._conn: sqlite3.Connection | None = None
        self._locked: str | None = None
        self._holder: list[LockHolder | None] = []  # lock_holder's answer, once asked

    # -- the file ----------------------------------------------------------
    def file(self) -> os.stat_result | None:
        """The database path's stat (None when it does not exist)."""
        try:
            return self.path.stat()
        except OSError:
            return None

    @property
    def exists(self) -> bool:
        return self.file() is not None

    def files(self) -> list[Path]:
        """The database file and those of its -wal/-shm/-journal that exist (what SQLite opens and writes)."""
        return [p for p in sidecars(self.path) if os.path.lexists(p)]

    @property
    def is_directory(self) -> bool:
        st = self.file()
        return st is not None and stat.S_ISDIR(st.st_mode)

    @property
    def size(self) -> int | None:
        st = self.file()
        return None if st is None else st.st_size

    def owner_can(self, bits: int) -> bool:
        """Whether the file's owner (the service account) has ``bits`` (stat.S_IRUSR / S_IWUSR).

        os.access() is wrong here: the suite often runs as root, for whom every file is readable and writable.
        """
        st = self.file()
        return st is not None and bool(st.st_mode & bits)

    @property
    def owner_can_read(self) -> bool:
        st = self.file()
        return st is not None and stat.S_ISREG(st.st_mode) and bool(st.st_mode & stat.S_IRUSR)

    @property
    def owner_can_write(self) -> bool:
        return self.owner_can(stat.S_IWUSR)

    def describe_mode(self) -> str:
        st = self.file()
        if st is None:
            return "missing"
        what = "" if stat.S_ISREG(st.st_mode) else f"a {kind(st.st_mode)}, "
        return f"{what}mode {stat.filemode(st.st_mode)} ({oct(st.st_mode & 0o777)}), owner uid {st.st_uid}"

    def header(self) -> bytes:
        """The first 16 bytes of the file ('' for an empty file); DatabaseUnavailable if unreadable."""
        try:
            return read_head(self.path, 16)
        except NotARegularFile as exc:
            raise DatabaseUnavailable(f"{exc}, not a database file") from None
        except OSError as exc:
            raise DatabaseUnavailable(f"cannot read {why(exc)}") from None

    # -- queries -------------------------------------------------------------
    def connect(self) -> ReadOnlyConnection:
        """The read-only connection (opened once); DatabaseUnavailable names why it cannot be opened."""
        if self._conn is None:
            if self.file() is None:
                raise DatabaseUnavailable(f"{self.path} does not exist")
            try:
                self._conn = connect_ro(self.path, self.lock_timeout)
            except sqlite3.Error as exc:
                if "locked" in str(exc):
                    self._locked = f"{self.path}: {exc}"
                    raise DatabaseLocked(self._locked) from None
                raise DatabaseUnavailable(f"cannot open {self.path} read-only: {exc}") from None
        return self._conn

    def query(self, sql: str, budget: float | None = None, params: tuple = ()) -> list[tuple]:
        """Rows of one read-only statement; BudgetExceeded past ``budget`` seconds, DatabaseUnavailable on error.

        Once a query has waited the lock timeout in vain, later ones fail at once with that observation: a locked
        database costs one lock timeout per run, not one per check. A snapshot read without locks (immutable, see
        :func:`read_only_uri`) whose file changed meanwhile, because the application opened and checkpointed it,
        may mix two versions of a page: the statement then runs once more on a fresh connection, so it costs at
        most twice its budget.
        """
        try:
            rows = self._execute(sql, budget, params)
        except DatabaseUnavailable:
            if not self._stale():
                raise
            return self._execute(sql, budget, params)
        return self._execute(sql, budget, params) if self._stale() else rows

    def _stale(self) -> bool:
        """Close an immutable snapshot whose file changed meanwhile; True when the statement must run again."""
        if self._conn is None or not self._conn.changed_underneath():
            return False
        self.close()
        return True

    def _execute(self, sql: str, budget: float | None, params: tuple) -> list[tuple]:
        if self._locked is not None:
            raise DatabaseLocked(f"{self._locked} (not queried again)")
        conn = self.connect()
        watchdog = None
        if budget is not None:
            # sqlite3_interrupt() from a timer, not a progress handler: SQLite runs a whole quick_check or
            # integrity_check pass inside one VM step, where a progress handler's "stop" waits for the step to end
            # (0.9 s for a 0.25 s budget on a 1 GB file); the interrupt flag is read inside the b-tree walk.
            watchdog = threading.Timer(budget, conn.interrupt)
            watchdog.daemon = True
            watchdog.start()
        try:
            return conn.execute(sql, params).fetchall()
        except sqlite3.OperationalError as exc:
            if watchdog is not None and "interrupt" in str(exc):  # only the watchdog interrupts it
                raise BudgetExceeded(f"{sql!r} did not finish within its {budget:g} s budget") from None
            if "locked" in str(exc):
                self._locked = _why(self.path, exc)
                raise DatabaseLocked(self._locked) from None
            raise DatabaseUnavailable(_why(self.path, exc)) from None
        except sqlite3.DatabaseError as exc:
            raise DatabaseUnavailable(_why(self.path, exc)) from None
        finally:
            if watchdog is not None:
                watchdog.cancel()
                watchdog.join()  # a late interrupt must not hit the connection's next statement

    def tables(self) -> list[str]:
        return [row[0] for row in self.query("SELECT name FROM sqlite_master WHERE type='table' ORDER BY name")]

    def stored_credentials(self, table: str, excluding_user: str | None = None) -> int:
        """Rows of the credentials table (0 when it is missing), not counting ``excluding_user``'s when the table
        has a user_id column: the row a login probe writes for its own user is no evidence of stored credentials."""
        if table not in self.tables():
            return 0
        columns = {row[1] for row in self.query(f'PRAGMA table_info("{table}")')}
        if excluding_user is not None and "user_id" in columns:
            return self.query(f'SELECT COUNT(*) FROM "{table}" WHERE user_id IS NOT ?', params=(excluding_user,))[0][0]
        return self.query(f'SELECT COUNT(*) FROM "{table}"')[0][0]

    def scan(self, pragma: str, budget: float) -> Scan:
        """Run ``PRAGMA <pragma>`` within ``budget`` seconds."""
        start = time.monotonic()
        rows = self.query(f"PRAGMA {pragma}", budget)
        return Scan([row[0] if len(row) == 1 else row for row in rows], time.monotonic() - start)

    def timed_count(self, table: str, budget: float) -> tuple[int, float]:
        """(row count, seconds) of ``SELECT COUNT(*)`` on one table."""
        start = time.monotonic()
        (count,) = self.query(f'SELECT COUNT(*) FROM "{table}"', budget)[0]
        return count, time.monotonic() - start

    # -- locks ---------------------------------------------------------------
    def lock_holder(self) -> LockHolder | None:
        """Who has held SQLite's write lock for the whole lock timeout, or None if it was free at some point.

        F_GETLK only asks the kernel; it neither takes nor waits for a lock, so the probe cannot block the
        application the way the runbook's ``BEGIN IMMEDIATE`` can. Asked once per run: a held lock costs one lock
        timeout, whichever checks ask.
        """
        if not self._holder:
            self._holder.append(self._wait_for_writer())
        return self._holder[0]

    def _wait_for_writer(self) -> LockHolder | None:
        deadline = time.monotonic() + self.lock_timeout
        start = time.monotonic()
        while True:
            holder = self._current_writer()
            if holder is None:
                return None
            if time.monotonic() >= deadline:
                return LockHolder(holder[0], holder[1], time.monotonic() - start, command_line(holder[0]))
            time.sleep(min(0.02, max(0.0, deadline - time.monotonic())))

    def _current_writer(self) -> tuple[int, str] | None:
        # Strongest first, so the evidence names the lock that blocks the most.
        probes = [(self.path, SHARED_FIRST, SHARED_SIZE, "EXCLUSIVE"), (self.path, PENDING_BYTE, 1, "PENDING")]
        probes.append((self.path, RESERVED_BYTE, 1, "RESERVED"))
        shm = Path(str(self.path) + "-shm")
        if shm.exists():
            probes.append((shm, WAL_WRITE_LOCK, 1, "WAL-WRITE"))
        for path, start, length, name in probes:
            pid = _write_lock_owner(path, start, length)
            if pid:
                return pid, name
        return None

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def _lock_on(path: Path, start: int, length: int) -> tuple[int, int] | None:
    """(pid, F_RDLCK or F_WRLCK) of another process's lock overlapping [start, start+length), via F_GETLK."""
    try:
        fd = open_regular(path)
    except OSError:
        return None
    try:
        # Asking whether a write lock could be placed reports any conflicting lock, read or write.
        query = struct.pack(_FLOCK, fcntl.F_WRLCK, os.SEEK_SET, start, length, 0)
        l_type, _, _, _, pid = struct.unpack(_FLOCK, fcntl.fcntl(fd, fcntl.F_GETLK, query))
    except OSError:
        return None
    finally:
        os.close(fd)
    return None if l_type == fcntl.F_UNLCK else (pid, l_type)


def _write_lock_owner(path: Path, start: int, length: int) -> int | None:
    """Pid of a process holding a write lock that overlaps [start, start+length)."""
    lock = _lock_on(path, start, length)
    # Readers take read locks (briefly on PENDING too); only a write lock marks a writer.
    return lock[0] if lock is not None and lock[1] == fcntl.F_WRLCK else None


def _why(path: Path, exc: sqlite3.Error) -> str:
    text = str(exc)
    if "not a database" in text:
        return f"{path} is not a SQLite database ({text})"
    if "locked" in text:
        return f"{path}: database is locked ({text})"
    return f"{path}: {text}"


# -- whole-file observations, for the fix actions' before/after evidence ------------------


class ReadOnlyConnection(sqlite3.Connection):
    """A connection of :func:`connect_ro`, which knows whether it reads a snapshot without locks."""

    path: Path | None = None
    immutable = False
    stamp: tuple | None = None  # the file's (inode, size, mtime) when an immutable snapshot was opened

    def changed_underneath(self) -> bool:
        """Whether the file of an immutable snapshot has changed since it was opened (never for a locking one)."""
        return self.immutable and _stamp(self.path) != self.stamp


def _stamp(path: Path) -> tuple | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_ino, st.st_size, st.st_mtime_ns


def read_only_uri(path: Path | str) -> tuple[str, bool]:
    """(URI, immutable) that reads ``path`` without creating, changing or removing any file beside it.

    ``mode=ro`` on a WAL database creates the -shm and -wal files when they are missing (32 KiB and an empty
    file, and a new directory mtime); ``immutable=1`` creates nothing, but takes no locks and ignores the -wal.
    So, by the journal mode in the header and the files present:

    - rollback journal (or not a database at all): ``mode=ro``, which creates nothing;
    - WAL with its -wal and -shm: ``mode=ro&readonly_shm=1``; they exist already, a live writer coordinates
      through them, and the -shm is not written (a plain reader would write its read marks into it);
    - WAL without both: no connection uses the -shm (a WAL connection keeps both files open, and the last one
      to close removes them), so only a process holding a lock on the file can be using it, which F_GETLK shows
      without taking one: "locked" when one does (WAL in exclusive locking mode, which needs no -shm);
    - then, a -wal holding frames without a -shm is a crash leftover: refused, since reading those frames would
      create the -shm and reading without them would miss committed transactions;
    - else the database was closed cleanly and nobody has it open: ``immutable=1``.

    A database, -wal, -shm or -journal path that is not a regular file is refused as well: SQLite would block on a
    FIFO. Raises sqlite3.OperationalError, so callers handle it with SQLite's own errors.
    """
    db = Path(path)
    plain = f"file:{quote(str(db))}?mode=ro"
    found = {}
    for side in sidecars(db):
        try:
            st = os.stat(side)
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise sqlite3.OperationalError(why(exc)) from None
        if not stat.S_ISREG(st.st_mode):
            raise sqlite3.OperationalError(f"{side} is a {kind(st.st_mode)}, not a regular file")
        found[side.name[len(db.name) :] or "db"] = st
    try:
        header = read_head(db, 20) if "db" in found else b""
    except OSError as exc:
        raise sqlite3.OperationalError(why(exc)) from None
    if len(header) < 20 or not header.startswith(SQLITE_HEADER) or header[18] != WAL_FORMAT:
        return plain, False
    if "-wal" in found and "-shm" in found:
        # readonly_shm: a reader registers in the -shm (its read marks), which changes the file and its mtime;
        # with the -shm mapped read-only SQLite reads a private copy of the index and checks it afterwards.
        return plain + "&readonly_shm=1", False
    holder = _lock_on(db, PENDING_BYTE, SHARED_FIRST + SHARED_SIZE - PENDING_BYTE)
    if holder is not None:
        raise sqlite3.OperationalError(
            f"database is locked by pid {holder[0]}, which uses it without a -shm (WAL in exclusive locking mode): "
            "reading it would create the -shm; not read"
        )
    if found.get("-wal") is not None and found["-wal"].st_size > 0:
        raise sqlite3.OperationalError(
            f"{db}-wal holds {found['-wal'].st_size} bytes but {db}-shm is missing (left by a crash): reading it "
            "would create the -shm, reading without it would miss committed transactions; not read"
        )
    return f"file:{quote(str(db))}?mode=ro&immutable=1", True


def connect_ro(path: Path | str, timeout: float = 5.0) -> ReadOnlyConnection:
    """A read-only connection that cannot create the file, write to it, take a write lock, or create, change or
    remove any file beside it (:func:`read_only_uri`)."""
    uri, immutable = read_only_uri(path)
    conn = sqlite3.connect(uri, uri=True, timeout=timeout, check_same_thread=False, factory=ReadOnlyConnection)
    conn.path = Path(path)
    if immutable:
        conn.immutable, conn.stamp = True, _stamp(conn.path)
    return conn


def user_tables(conn: sqlite3.Connection) -> list[str]:
    return [
        r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%'")
    ]


def integrity(path: Path | str) -> list[str]:
    """PRAGMA integrity_check lines (['ok'] when clean); errors opening the file become one line."""
    try:
        with closing(connect_ro(path)) as conn:
            return [row[0] for row in conn.execute("PRAGMA integrity_check")]
    except sqlite3.Error as exc:
        return [f"{exc.__class__.__name__}: {exc}"]


def table_counts(path: Path | str) -> dict[str, int | str]:
    """Rows per table; a table (or schema) that cannot be read maps to the error text."""
    try:
        with closing(connect_ro(path)) as conn:
            out: dict[str, int | str] = {}
            for name in user_tables(conn):
                try:
                    out[name] = conn.execute(f'SELECT COUNT(*) FROM "{name}"').fetchone()[0]
                except sqlite3.Error as exc:
                    out[name] = f"unreadable: {exc}"
            return out
    except sqlite3.Error as exc:
        return {"<schema>": f"unreadable: {exc}"}


def row_checksums(path: Path | str) -> dict[str, str]:
    """sha256 of every table's rows in a stable order: equal before and after VACUUM / REINDEX."""
    out = {}
    with closing(connect_ro(path)) as conn:
        for name in user_tables(conn):
            digest = hashlib.sha256()
            ncols = len(conn.execute(f'SELECT * FROM "{name}" LIMIT 0').description)
            order = ", ".join(str(i) for i in range(1, ncols + 1))
            for row in conn.execute(f'SELECT * FROM "{name}" ORDER BY {order}'):
                digest.update(repr(row).encode())
            out[name] = digest.hexdigest()
    return out


MIN_ROWID, MAX_ROWID = -(2**63), 2**63 - 1


def readable_rows(conn: sqlite3.Connection, table: str, gaps: list[tuple[int, int | None]]) -> Iterator[tuple]:
    """Every row of a rowid table that sits on a readable page, in rowid order, each as (rowid, *columns).

    A damaged leaf page stops a plain scan (and ``iterdump()``) at the first bad page. Here a scan that
    fails resumes past the damage: a binary search over ``WHERE rowid >= ?`` seeks through the interior
    pages to the first rowid that can be read again. Each skipped range is appended to ``gaps`` as
    (first, last) rowid (last None when nothing after it could be read).
    """
    at, last = MIN_ROWID, None
    while True:
        try:
            for row in conn.execute(f'SELECT rowid, * FROM "{table}" WHERE rowid >= ? ORDER BY rowid', (at,)):
                last = row[0]
                yield row
            return
        except sqlite3.DatabaseError:
            pass
        # The cursor reads one row ahead, so the last good row before the damage was dropped with the error:
        # step one row at a time (LIMIT 1 stops before the next row) until the damage itself.
        at = at if last is None else last + 1
        while (row := _row_at(conn, table, at)) not in (None, False):
            last = row[0]
            yield row
            at = last + 1
        if row is None:
            return
        resume = _next_readable(conn, table, at)
        gaps.append((at, None if resume is None else resume - 1))
        if resume is None:
            return
        at = resume


def _row_at(conn: sqlite3.Connection, table: str, at: int) -> tuple | None | bool:
    """The first row with rowid >= ``at`` (None: there is none; False: the seek lands on damage)."""
    try:
        return conn.execute(f'SELECT rowid, * FROM "{table}" WHERE rowid >= ? ORDER BY rowid LIMIT 1', (at,)).fetchone()
    except sqlite3.DatabaseError:
        return False


def _next_readable(conn: sqlite3.Connection, table: str, at: int) -> int | None:
    """The first rowid after the damage at ``at`` that a seek reaches, or None (about 130 probes at most)."""
    lo, step = at, 1  # a seek to ``lo`` fails; find the smallest rowid whose seek succeeds
    while True:
        hi = min(lo + step, MAX_ROWID)
        if _row_at(conn, table, hi) is not False:
            break
        if hi == MAX_ROWID:
            return None
        lo, step = hi, step * 2
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if _row_at(conn, table, mid) is False:
            lo = mid
        else:
            hi = mid
    found = _row_at(conn, table, hi)
    return None if found in (None, False) else found[0]


def foreign_key_orphans(path: Path | str) -> dict[str, int] | None:
    """Rows per table whose foreign key points at nothing; None when the check cannot run on this file."""
    try:
        with closing(connect_ro(path)) as conn:
            out: dict[str, int] = {}
            for table, *_ in conn.execute("PRAGMA foreign_key_check"):
                out[table] = out.get(table, 0) + 1
            return out
    except sqlite3.Error:
        return None


def user_id(path: Path | str, login: str, timeout: float = 5.0) -> str | None:
    """The id of the user whose email or username is ``login`` in the users table, read without a trace; None when
    there is none. Raises sqlite3.Error when the database cannot be read."""
    with closing(connect_ro(path, timeout)) as conn:
        columns = {row[1] for row in conn.execute('PRAGMA table_info("users")')}
        keys = [column for column in ("email", "username") if column in columns]
        if "id" not in columns or not keys:
            return None
        where = " OR ".join(f'"{column}" = ?' for column in keys)
        row = conn.execute(f"SELECT id FROM users WHERE {where} LIMIT 1", [login] * len(keys)).fetchone()
        return None if row is None else str(row[0])
