"""Shared machinery of the fix scripts: dry-run, audit, lock, and the safe versions of the runbook's actions.

The runbook's scripts lose data (``rm`` of the database, ``truncate`` of logs,
``cp`` of a live SQLite file) and end unrelated processes (``pkill -f
python``). Every action here is the safe counterpart:

* databases are copied with SQLite's online backup API and the copy passes
  ``PRAGMA integrity_check`` before the original is touched;
* nothing is deleted: originals move to ``<backup_dir>/quarantine/<stamp>/``,
  ``node_modules`` and caches move aside, logs are renamed and gzip-compressed;
* processes are ended by the pid in their pid file (or their systemd unit),
  never by a name pattern.

A :class:`Remediation` runs one fix: in dry-run (the default) each action is
printed and audited but not carried out; with ``--execute`` it is carried out.
"""

from __future__ import annotations

import argparse
import fcntl
import gzip
import hashlib
import json
import os
import shlex
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote, urlsplit

import psutil
import requests

from observe import profile as profiles
from observe.secrets import redact, redact_obj, register
from remediation.scripts import SCRIPTS

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_REPORT_DIR = ROOT / "reports"
AUDIT_LOG = "remediation-audit.jsonl"
LOCK_FD_ENV = "FOSSAWORK_REMEDIATION_LOCK_FD"
STOP_GRACE_SECONDS = 10.0
EXIT_OK, EXIT_FAILED, EXIT_BUSY = 0, 1, 3


class StepFailed(Exception):
    """An action failed; the fix stops there (later actions may depend on it)."""


class Busy(Exception):
    """Another remediation holds the target's lock; ``pid`` is its process."""

    def __init__(self, pid: str):
        super().__init__(f"remediation in progress (pid {pid})")
        self.pid = pid


def stamp() -> str:
    """UTC timestamp for file names: 20250113T101500Z."""
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def unique_path(directory: Path, stem: str, suffix: str = "") -> Path:
    """``directory/stem+suffix``, or with -2, -3... appended: never an existing file."""
    candidate, n = directory / f"{stem}{suffix}", 1
    while candidate.exists() or candidate.is_symlink():
        n += 1
        candidate = directory / f"{stem}-{n}{suffix}"
    return candidate


def lock_key(profile: profiles.Profile) -> str:
    """One key per target: its profile name plus a hash of where it lives (two sandboxes named alike differ)."""
    where = hashlib.sha1(f"{profile.db_path}|{profile.api_url}".encode()).hexdigest()[:8]
    name = "".join(c if c.isalnum() or c in "-_" else "_" for c in profile.name)
    return f"{name}-{where}"


class RemediationLock:
    """Exclusive, non-blocking flock on ``<report_dir>/remediation-<target>.lock``.

    A fix script started by the pytest plugin inherits the plugin's locked
    descriptor (``FOSSAWORK_REMEDIATION_LOCK_FD``): it holds the same lock,
    so the plugin and its scripts count as one remediation.
    """

    def __init__(self, report_dir: Path, profile: profiles.Profile):
        self.path = Path(report_dir) / f"remediation-{lock_key(profile)}.lock"
        self.fd: int | None = None
        self._inherited = False

    def acquire(self) -> RemediationLock:
        """Take the lock or raise :class:`Busy` naming the holder's pid."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        inherited = os.environ.get(LOCK_FD_ENV)
        if inherited and self._same_file(int(inherited)):
            fd, self._inherited = int(inherited), True
        else:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            if not self._inherited:
                os.close(fd)
            raise Busy(holder) from None
        if not self._inherited:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self.fd = fd
        return self

    def _same_file(self, fd: int) -> bool:
        try:
            a, b = os.fstat(fd), os.stat(self.path)
        except OSError:
            return False
        return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)

    def release(self) -> None:
        # The file stays: deleting a lock file lets a third process lock a different inode.
        if self.fd is not None and not self._inherited:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
        self.fd = None

    def __enter__(self) -> RemediationLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


class Remediation:
    """One fix against one target: prints and audits every action; carries them out only when ``execute``."""

    def __init__(self, profile, script, issue_type, execute, report_dir, run_id="", out=None):
        self.profile = profile
        self.script = script
        self.issue_type = issue_type
        self.execute = execute
        self.report_dir = Path(report_dir)
        self.run_id = run_id
        self.out = out or sys.stdout

    def _say(self, text: str) -> None:
        print(redact(text), file=self.out, flush=True)

    def audit(self, action: str, result: str, detail: str = "") -> None:
        """Append one line to the audit log (redacted); the only file a dry run writes."""
        entry = {
            "time": now_iso(),
            "run_id": self.run_id,
            "target": self.profile.name,
            "script": self.script,
            "issue_type": self.issue_type,
            "action": action,
            "dry_run": not self.execute,
            "result": result,
            "detail": detail,
        }
        self.report_dir.mkdir(parents=True, exist_ok=True)
        line = json.dumps(redact_obj(entry)) + "\n"
        fd = os.open(self.report_dir / AUDIT_LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(line)

    def step(self, action: str, do: Callable[[], object]) -> object:
        """An action that changes the target: described in dry-run, carried out (and its result shown) otherwise."""
        if not self.execute:
            self._say(f"[dry-run] would {action}")
            self.audit(action, "dry-run")
            return None
        try:
            result = do()
        except Exception as exc:  # every failure becomes one reported line, never a traceback
            detail = f"{exc.__class__.__name__}: {exc}"
            self._say(f"[failed] {action}: {detail}")
            self.audit(action, "failed", detail)
            raise StepFailed(f"{action}: {detail}") from exc
        detail = "" if result is None else str(result)
        self._say(f"[done] {action}" + (f": {detail}" if detail else ""))
        self.audit(action, "done", detail)
        return result

    def observe(self, what: str, look: Callable[[], object]) -> object:
        """A read-only observation: runs in dry-run too, its result is printed and audited."""
        try:
            result = look()
        except Exception as exc:
            result = f"could not observe ({exc.__class__.__name__}: {exc})"
        self._say(f"[info] {what}: {result}")
        self.audit(what, "observed", str(result))
        return result

    def fail(self, why: str) -> None:
        """Stop the fix with a reason (a condition the fix must not work around)."""
        self._say(f"[stop] {why}")
        self.audit("stop", "failed", why)
        raise StepFailed(why)


# -- SQLite ----------------------------------------------------------------


def _ro(path: Path | str, timeout: float = 5.0) -> sqlite3.Connection:
    """A read-only connection: it cannot create the file, write to it or take a write lock."""
    return sqlite3.connect(f"file:{quote(str(path))}?mode=ro", uri=True, timeout=timeout)


def integrity(path: Path | str) -> list[str]:
    """PRAGMA integrity_check lines (['ok'] when clean); errors opening the file become one line."""
    try:
        with closing(_ro(path)) as conn:
            return [row[0] for row in conn.execute("PRAGMA integrity_check")]
    except sqlite3.Error as exc:
        return [f"{exc.__class__.__name__}: {exc}"]


def tables(conn: sqlite3.Connection) -> list[str]:
    return [
        r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%'")
    ]


def table_counts(path: Path | str) -> dict[str, int | str]:
    """Rows per table; a table (or schema) that cannot be read maps to the error text."""
    try:
        with closing(_ro(path)) as conn:
            out: dict[str, int | str] = {}
            for name in tables(conn):
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
    with closing(_ro(path)) as conn:
        for name in tables(conn):
            digest = hashlib.sha256()
            ncols = len(conn.execute(f'SELECT * FROM "{name}" LIMIT 0').description)
            order = ", ".join(str(i) for i in range(1, ncols + 1))
            for row in conn.execute(f'SELECT * FROM "{name}" ORDER BY {order}'):
                digest.update(repr(row).encode())
            out[name] = digest.hexdigest()
    return out


def online_backup(src: Path, dest: Path, timeout: float = 5.0) -> None:
    """Copy ``src`` to a new file ``dest`` with the online backup API (consistent while the backend writes)."""
    with closing(_ro(src, timeout)) as s, closing(sqlite3.connect(dest)) as d:
        s.backup(d)
    os.chmod(dest, 0o600)


def verify(path: Path) -> None:
    """Raise unless ``path`` passes integrity_check and has at least one table."""
    lines = integrity(path)
    if lines != ["ok"]:
        raise StepFailed(f"{path} fails integrity_check: {'; '.join(lines[:3])}")
    with closing(_ro(path)) as conn:
        if not tables(conn):
            raise StepFailed(f"{path} has no tables")


def backup_database(r: Remediation) -> Path | None:
    """Verified online backup of the target's database into backup_dir; the step every change depends on."""
    src, dest_dir = Path(r.profile.db_path), Path(r.profile.backup_dir)

    def do() -> Path:
        dest_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        dest = unique_path(dest_dir, f"{src.stem}-{stamp()}", ".db")
        online_backup(src, dest, r.profile.timeouts.lock + 5)
        verify(dest)
        return dest

    return r.step(f"back up {src} into {dest_dir} (SQLite online backup API) and verify it (integrity_check)", do)


def _write(r: Remediation, sql: str) -> Callable[[], str]:
    def do() -> str:
        path = Path(r.profile.db_path)
        before = path.stat().st_size
        with closing(sqlite3.connect(path, timeout=r.profile.timeouts.lock + 5, isolation_level=None)) as conn:
            for statement in sql.split(";"):
                if statement.strip():
                    conn.execute(statement)
        return f"{before} -> {path.stat().st_size} bytes"

    return do


def maintain_database(r: Remediation, sql: str) -> None:
    """Run VACUUM / REINDEX / ANALYZE only after a verified backup, and prove every row survived."""
    db = Path(r.profile.db_path)
    lines = r.observe(f"integrity_check of {db}", lambda: integrity(db))
    if lines != ["ok"]:
        r.fail(f"{db} fails integrity_check; run recover-corrupted-database instead of {sql}")
    before = r.observe("row checksums before", lambda: row_checksums(db))
    backup_database(r)
    r.step(f"run {sql} on {db}", _write(r, sql))
    if r.execute:
        after = row_checksums(db)
        if after != before:
            r.fail(f"row checksums changed by {sql}: before {before}, after {after}; the verified backup is intact")
        r.observe("row checksums after (equal to before)", lambda: after)


# -- corruption recovery ----------------------------------------------------


def _recover_cli(work: Path, dest: Path) -> str:
    """``sqlite3 work .recover | sqlite3 dest`` (rows it cannot place land in lost_and_found)."""
    dump = subprocess.run(["sqlite3", str(work), ".recover"], capture_output=True, timeout=600, check=True)
    subprocess.run(["sqlite3", str(dest)], input=dump.stdout, capture_output=True, timeout=600, check=True)
    return "sqlite3 .recover"


def _recover_iterdump(work: Path, dest: Path) -> str:
    """Replay Python's iterdump(); where it stops at a damaged table, copy the rest table by table.

    iterdump() raises at the first unreadable page, which would drop every later table; the top-up copies
    each table's readable rows (up to its first bad page) with INSERT OR IGNORE.
    """
    skipped = 0
    with closing(sqlite3.connect(work)) as src, closing(sqlite3.connect(dest, isolation_level=None)) as out:
        try:
            for statement in src.iterdump():
                try:
                    out.execute(statement)
                except sqlite3.Error:
                    skipped += 1
        except sqlite3.Error:
            skipped += 1
        if out.in_transaction:
            out.execute("COMMIT")
        if skipped:
            _top_up(src, out)
    return f"python iterdump ({skipped} statements skipped, readable rows copied table by table)"


def _top_up(src: sqlite3.Connection, out: sqlite3.Connection) -> None:
    schema = src.execute("SELECT type, name, sql FROM sqlite_master WHERE sql IS NOT NULL AND name NOT LIKE 'sqlite_%'")
    for kind, name, sql in sorted(schema.fetchall(), key=lambda row: row[0] != "table"):
        try:
            out.execute(sql)
        except sqlite3.Error:
            pass  # already created by iterdump
        if kind != "table":
            continue
        out.execute("BEGIN")
        try:
            for row in src.execute(f'SELECT * FROM "{name}"'):
                out.execute(f'INSERT OR IGNORE INTO "{name}" VALUES ({", ".join("?" * len(row))})', row)
        except sqlite3.Error:
            pass  # the rest of this table is on damaged pages
        out.execute("COMMIT")


def _newest_verified_backup(backup_dir: Path, stem: str, dest: Path) -> str:
    """Copy the newest backup of this database that passes integrity_check."""
    for candidate in sorted(backup_dir.glob(f"{stem}-*.db"), key=lambda p: p.stat().st_mtime, reverse=True):
        if integrity(candidate) == ["ok"]:
            online_backup(candidate, dest)
            return f"newest verified backup {candidate}"
    raise StepFailed(f"no backup of {stem} in {backup_dir} passes integrity_check")


def recover_database(r: Remediation) -> None:
    """The runbook's corruption recovery without its rm: quarantine, recover a copy, verify, install, count rows."""
    db, backups = Path(r.profile.db_path), Path(r.profile.backup_dir)
    run_stamp = stamp()
    quarantine = unique_path(backups / "quarantine", run_stamp)
    work_dir = unique_path(backups / "recovery", run_stamp)
    sidecars = [p for p in (db, *(db.with_name(db.name + s) for s in ("-wal", "-shm", "-journal"))) if p.exists()]
    r.observe(f"integrity_check of {db}", lambda: integrity(db)[:5])
    stop_service(r, "backend")

    def do_quarantine() -> str:
        quarantine.mkdir(parents=True, mode=0o700)
        for path in sidecars:
            shutil.move(path, quarantine / path.name)
        return f"moved {', '.join(p.name for p in sidecars)} to {quarantine}"

    r.step(
        f"move the original {db} (and its -wal/-shm/-journal) into {quarantine}/ (kept, never deleted)", do_quarantine
    )
    work, recovered = work_dir / db.name, work_dir / "recovered.db"

    def do_copy() -> str:
        # Recovery reads a copy: sqlite3 may roll back a hot journal, which must not alter the quarantined evidence.
        work_dir.mkdir(parents=True, mode=0o700)
        for path in sidecars:
            shutil.copy2(quarantine / path.name, work_dir / path.name)
        return str(work)

    r.step(f"copy the quarantined files into {work_dir}/ to recover from", do_copy)
    before = r.observe("rows per table in the damaged file", lambda: table_counts(work)) if r.execute else {}
    strategies = [("recover with `sqlite3 .recover`", _recover_cli)] if shutil.which("sqlite3") else []
    strategies += [("recover with Python iterdump()", _recover_iterdump)]
    strategies += [("restore the newest verified backup", lambda w, d: _newest_verified_backup(backups, db.stem, d))]
    source = None
    for label, strategy in strategies:
        if not r.execute:
            r.step(f"{label} into {recovered}, then verify it (integrity_check)", lambda: None)
            continue
        try:
            if recovered.exists():
                shutil.move(recovered, unique_path(work_dir, "failed-attempt", ".db"))
            source = r.step(f"{label} into {recovered} and verify it", lambda s=strategy: _attempt(s, work, recovered))
            break
        except StepFailed:
            continue
    if r.execute and source is None:
        r.step(
            f"put the original back from {quarantine} (nothing could be recovered)",
            lambda: _restore(quarantine, sidecars),
        )
        start_service(r, "backend")
        r.fail("no recovery strategy produced a verified database; the original is back in place, escalate")

    def do_install() -> str:
        tmp = unique_path(db.parent, f".{db.name}.recovered")
        shutil.copy2(recovered, tmp)
        os.chmod(tmp, (quarantine / db.name).stat().st_mode & 0o777 if (quarantine / db.name).exists() else 0o600)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, db)
        return str(db)

    r.step(f"install the verified recovered database at {db} (atomic rename)", do_install)
    if r.execute:
        after = table_counts(db)
        r.observe(
            "rows per table before -> after (rows that could not be recovered)", lambda: _row_report(before, after)
        )
    start_service(r, "backend")


def _attempt(strategy: Callable[[Path, Path], str], work: Path, recovered: Path) -> str:
    how = strategy(work, recovered)
    verify(recovered)
    return how


def _restore(quarantine: Path, sidecars: list[Path]) -> str:
    for path in sidecars:
        shutil.move(quarantine / path.name, path)
    return "original restored"


def _row_report(before: dict, after: dict) -> dict:
    """Per table: before, after, and lost (before - after) or 'unknown' when the damaged table was unreadable."""
    out = {}
    for name in sorted(set(before) | set(after)):
        b, a = before.get(name, "absent"), after.get(name, "absent")
        lost = b - a if isinstance(b, int) and isinstance(a, int) else "unknown"
        out[name] = {"before": b, "after": a, "lost": lost}
    return out


# -- logs --------------------------------------------------------------------


def oversized_logs(profile: profiles.Profile) -> list[Path]:
    """Log files matching [logs] all that exceed thresholds.log_max_bytes."""
    root, limit = Path(profile.log_dir), profile.thresholds.log_max_bytes
    found = {p for pattern in profile.logs.all for p in root.glob(pattern) if p.is_file()}
    return sorted(p for p in found if p.stat().st_size > limit)


def _gzip_verified(src: Path, dest: Path) -> tuple[int, str]:
    """Compress ``src`` into ``dest`` and prove the archive holds the same bytes (size and sha256)."""
    want, size = hashlib.sha256(), 0
    tmp = dest.with_name(dest.name + ".partial")
    with open(src, "rb") as fin, gzip.open(tmp, "wb") as fout:
        while chunk := fin.read(1 << 20):
            want.update(chunk)
            size += len(chunk)
            fout.write(chunk)
    got, got_size = hashlib.sha256(), 0
    with gzip.open(tmp, "rb") as f:
        while chunk := f.read(1 << 20):
            got.update(chunk)
            got_size += len(chunk)
    if (got_size, got.hexdigest()) != (size, want.hexdigest()):
        raise StepFailed(f"{tmp} does not decompress to the bytes of {src}; both kept")
    os.replace(tmp, dest)
    return size, want.hexdigest()


def rotate_logs(r: Remediation) -> None:
    """Rename each oversized log with a timestamp and gzip it; the runbook's truncate would lose lines."""
    logs = r.observe("logs over thresholds.log_max_bytes", lambda: [str(p) for p in oversized_logs(r.profile)])
    for name in logs if isinstance(logs, list) else []:
        r.step(
            f"rotate {name}: rename to {Path(name).name}.<UTC stamp>, gzip it, verify every byte",
            lambda n=name: _rotate(Path(n)),
        )


def _rotate(path: Path) -> str:
    mode = path.stat().st_mode & 0o777
    rotated = unique_path(path.parent, f"{path.name}.{stamp()}")
    os.rename(path, rotated)
    try:  # a fresh empty log in its place, unless the writer already made one
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode))
    except FileExistsError:
        pass
    archive = rotated.with_name(rotated.name + ".gz")
    seen = rotated.stat()
    size, digest = _gzip_verified(rotated, archive)
    # Drop the plain copy only when the archive holds all of it and no process can still append to it.
    now = rotated.stat()
    if now.st_size == seen.st_size == size and now.st_mtime_ns == seen.st_mtime_ns and not open_by([rotated]):
        rotated.unlink()
        return f"{archive} ({size} bytes, sha256 {digest[:12]})"
    return f"{archive} ({size} bytes); {rotated} kept: still open or still growing"


# -- processes -----------------------------------------------------------------


def open_by(paths: list[Path]) -> list[int]:
    """Pids of processes with any of ``paths`` open (read from /proc; processes we may not inspect are skipped)."""
    wanted = {str(p.resolve()) for p in paths}
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if any(os.readlink(fd) in wanted for fd in (proc / "fd").iterdir()):
                pids.append(int(proc.name))
        except OSError:
            continue
    return pids


def _describe_pid(pid: int) -> str:
    try:
        return f"pid {pid} ({shlex.join(psutil.Process(pid).cmdline())[:120]})"
    except psutil.Error:
        return f"pid {pid} (gone)"


def systemd_unit(profile: profiles.Profile, which: str) -> str:
    """The service's systemd unit when the profile names one and systemd actually runs this host; else ''."""
    unit = profile.values[f"{which}_unit"]
    if unit and shutil.which("systemctl") and Path("/run/systemd/system").is_dir():
        return unit
    return ""


def pid_file(profile: profiles.Profile, which: str) -> Path | None:
    return Path(profile.pid_dir) / f"{which}.pid" if profile.pid_dir else None


def service_process(profile: profiles.Profile, which: str) -> psutil.Process | None:
    """The live process of the service from its pid file, if it is one (pid reuse is checked by command line)."""
    path = pid_file(profile, which)
    try:
        proc = psutil.Process(int(path.read_text().split()[0])) if path else None
        if proc is None or proc.status() == psutil.STATUS_ZOMBIE:
            return None
        marker = profile.values[f"{which}_process"]
        family = [proc, *proc.children(recursive=True)]
        if marker and not any(marker in " ".join(p.cmdline()) for p in family):
            return None
        return proc
    except (OSError, ValueError, IndexError, psutil.Error):
        return None


def _end(procs: list[psutil.Process], grace: float = STOP_GRACE_SECONDS) -> str:
    """SIGTERM, then SIGKILL after ``grace`` seconds, to exactly these processes."""
    for p in procs:
        try:
            p.send_signal(signal.SIGTERM)
        except psutil.Error:
            pass
    _, alive = psutil.wait_procs(procs, timeout=grace)
    for p in alive:
        try:
            p.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(alive, timeout=grace)
    return f"ended pids {', '.join(str(p.pid) for p in procs)}" + (f" ({len(alive)} needed SIGKILL)" if alive else "")


def stop_service(r: Remediation, which: str) -> None:
    """Stop the backend or frontend by systemd unit or pid file; nothing else is ever signalled."""
    unit = systemd_unit(r.profile, which)
    if unit:
        r.step(f"systemctl stop {unit}", lambda: _run(["systemctl", "stop", unit], 60))
        return
    proc = service_process(r.profile, which)
    if proc is None:
        r.observe(f"{which} process from {pid_file(r.profile, which) or 'pid_dir (not set)'}", lambda: "not running")
        return
    family = [*proc.children(recursive=True), proc]
    r.step(
        f"stop the {which} {_describe_pid(proc.pid)} from {pid_file(r.profile, which)} and its children",
        lambda: _end(family),
    )


def health_url(profile: profiles.Profile, which: str) -> str:
    if which == "backend":
        return profile.api_url.rstrip("/") + profile.endpoints.health
    return profile.frontend_url


def wait_healthy(profile: profiles.Profile, which: str, timeout: float = 45.0) -> str:
    """Poll the service's URL until it answers 200, at most ``timeout`` seconds."""
    url, deadline, last = health_url(profile, which), time.monotonic() + timeout, "no answer"
    while time.monotonic() < deadline:
        try:
            answer = requests.get(
                url, timeout=(profile.timeouts.connect, profile.timeouts.read), verify=profile.verify_tls
            )
            if answer.status_code == 200:
                return f"{url} answered 200"
            last = f"status {answer.status_code}"
        except requests.RequestException as exc:
            last = exc.__class__.__name__
        time.sleep(0.25)
    raise StepFailed(f"{url} not healthy after {timeout:.0f} s (last: {last})")


def start_service(r: Remediation, which: str) -> None:
    """Start by systemd unit or the profile's start command, then wait (bounded) for its health URL."""
    unit = systemd_unit(r.profile, which)
    command = r.profile.values[f"{which}_start"]
    if unit:
        r.step(f"systemctl start {unit}", lambda: _run(["systemctl", "start", unit], 60))
    elif command:
        r.step(f"start the {which}: {command}", lambda: _spawn(r.profile, which, command))
    else:
        r.fail(f"cannot start the {which}: the profile has no {which}_unit under systemd and no {which}_start command")
    r.step(f"wait for {health_url(r.profile, which)} to answer 200", lambda: wait_healthy(r.profile, which))


def restart_service(r: Remediation, which: str) -> None:
    stop_service(r, which)
    start_service(r, which)


def _spawn(profile: profiles.Profile, which: str, command: str) -> str:
    """Run the start command detached; record its pid when the command does not write a pid file itself."""
    cwd = profile.values[f"{which}_cwd"] or None
    proc = subprocess.Popen(
        command,
        shell=True,
        cwd=cwd,
        start_new_session=True,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    path = pid_file(profile, which)
    time.sleep(0.5)
    if proc.poll() not in (None, 0):
        raise StepFailed(f"start command exited with {proc.returncode}")
    if path and proc.poll() is None and service_process(profile, which) is None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"{proc.pid}\n")
    return f"pid {proc.pid}"


def _run(argv: list[str], timeout: float, cwd: str | None = None) -> str:
    """Run a command; its last output lines are the result, a non-zero exit is a failed step."""
    done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-5:])
    if done.returncode:
        raise StepFailed(f"{shlex.join(argv)} exited {done.returncode}: {tail}")
    return tail or "ok"


def orphaned_browsers(profile: profiles.Profile) -> list[psutil.Process]:
    """Browser processes whose parent is gone (or pid 1) and that this process did not start."""
    mine = {p.pid for p in psutil.Process().children(recursive=True)} | {os.getpid()}
    found = []
    for proc in psutil.process_iter(["name", "ppid", "status"]):
        info = proc.info
        if profile.browser_process not in (info["name"] or "") or proc.pid in mine:
            continue
        if info["status"] == psutil.STATUS_ZOMBIE:
            continue  # already dead; only its parent can reap it
        if info["ppid"] in (0, 1) or not psutil.pid_exists(info["ppid"]):
            found.append(proc)
    return found


def end_orphaned_browsers(r: Remediation) -> None:
    procs = orphaned_browsers(r.profile)
    r.observe(f"orphaned '{r.profile.browser_process}' processes", lambda: [_describe_pid(p.pid) for p in procs])
    if procs:
        r.step(f"end orphaned browsers by pid: {', '.join(str(p.pid) for p in procs)}", lambda: _end(procs, 5.0))


def browser_launch(profile: profiles.Profile) -> str:
    """Launch the system browser headless once (its profile in a temp dir); never downloads a browser."""
    with tempfile.TemporaryDirectory(prefix="fossawork-browser-") as home:
        argv = [
            profile.browser_executable,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            f"--user-data-dir={home}",
            "--dump-dom",
            "about:blank",
        ]
        return _run(argv, profile.timeouts.browser) and "headless launch ok"


def top_processes(key: str, n: int = 5) -> list[str]:
    """The ``n`` processes using the most CPU (sampled over 0.5 s) or memory (RSS); read-only."""
    procs = list(psutil.process_iter(["name", "memory_info"]))
    if key == "cpu":
        for p in procs:
            try:
                p.cpu_percent(None)  # the first call only starts the sample
            except psutil.Error:
                pass
        time.sleep(0.5)
    rows = []
    for p in procs:
        try:
            value = p.cpu_percent(None) if key == "cpu" else p.info["memory_info"].rss / 2**20
        except (psutil.Error, AttributeError):
            continue
        rows.append((value, f"pid {p.pid} {p.info['name']}: {value:.0f}{'% cpu' if key == 'cpu' else ' MiB'}"))
    return [label for _, label in sorted(rows, reverse=True)[:n]]


# -- frontend --------------------------------------------------------------------


def move_aside(r: Remediation, path: Path, why: str) -> Path | None:
    """Rename ``path`` to ``path.aside-<stamp>`` next to it (kept; undo by renaming back)."""
    target = unique_path(path.parent, f"{path.name}.aside-{stamp()}")
    if not path.exists():
        return None
    return r.step(f"move {path} aside to {target.name} ({why})", lambda: (os.rename(path, target), target)[1])


def reinstall_node_modules(r: Remediation) -> None:
    """npm ci (npm install without a lockfile) with the old node_modules moved aside and restored on failure."""
    frontend = Path(r.profile.frontend_dir)
    lockfile = (frontend / "package-lock.json").exists()
    argv = ["npm", "ci" if lockfile else "install", "--no-audit", "--no-fund"]
    aside = move_aside(r, frontend / "node_modules", "kept until the reinstall succeeds")
    try:
        r.step(
            f"run `{shlex.join(argv)}` in {frontend}", lambda: _run(argv, r.profile.timeouts.build * 5, str(frontend))
        )
    except StepFailed:
        if aside is not None:
            failed = unique_path(frontend, f"node_modules.failed-{stamp()}")
            nm = frontend / "node_modules"
            r.step(
                f"restore the previous node_modules from {aside.name}",
                lambda: (nm.exists() and os.rename(nm, failed), os.rename(aside, nm))[-1],
            )
        raise


# -- permissions -----------------------------------------------------------------


def private_mode(mode: int, is_dir: bool) -> int:
    """Owner read/write (and search for directories) restored, group/other bits removed."""
    return (mode | (0o700 if is_dir else 0o600)) & ~0o077 & 0o7777


def fix_permissions(r: Remediation, paths: list[Path]) -> None:
    for path in paths:
        try:
            st = path.stat()
        except OSError:
            r.observe(f"permissions of {path}", lambda: "missing")
            continue
        is_dir = path.is_dir()
        mode, want = st.st_mode & 0o7777, private_mode(st.st_mode & 0o7777, is_dir)
        if mode == want:
            r.observe(f"permissions of {path}", lambda m=mode: f"{m:o} ok")
        else:
            r.step(f"chmod {want:o} {path} (was {mode:o})", lambda p=path, w=want: os.chmod(p, w))


def secret_files(profile: profiles.Profile) -> list[Path]:
    """The database (and sidecars), the .env file, the credentials directory and its files."""
    db = Path(profile.db_path)
    paths = [db, *(db.with_name(db.name + s) for s in ("-wal", "-shm", "-journal"))]
    paths = [p for p in paths if p == db or p.exists()]
    if profile.env_file:
        paths.append(Path(profile.env_file))
    if profile.credentials_dir:
        creds = Path(profile.credentials_dir)
        paths += (
            [creds, *sorted(p for p in creds.rglob("*") if p.is_file() or p.is_dir())] if creds.is_dir() else [creds]
        )
    return paths


# -- network (read-only) ------------------------------------------------------------


def connectivity(profile: profiles.Profile) -> dict[str, str]:
    """DNS, TCP and HTTPS reachability of workfossa_url; each step's outcome, nothing changed."""
    parts = urlsplit(profile.workfossa_url)
    host, port = parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80)
    out = {}
    try:
        out["dns"] = ", ".join(sorted({a[4][0] for a in socket.getaddrinfo(host, port)}))
    except OSError as exc:
        return {"dns": f"failed: {exc}"}
    try:
        with socket.create_connection((host, port), timeout=profile.timeouts.connect):
            out["tcp"] = f"{host}:{port} open"
    except OSError as exc:
        return {**out, "tcp": f"failed: {exc}"}
    try:
        answer = requests.head(profile.workfossa_url, timeout=profile.timeouts.workfossa, verify=profile.verify_tls)
        out["https"] = f"status {answer.status_code}"
    except requests.RequestException as exc:
        out["https"] = f"failed: {exc.__class__.__name__}"
    return out


def archive_credentials(r: Remediation, dest_dir: Path) -> None:
    creds = Path(r.profile.credentials_dir) if r.profile.credentials_dir else None
    if creds is None or not creds.is_dir():
        r.observe("credentials directory", lambda: "none to archive")
        return

    def do() -> str:
        dest = unique_path(dest_dir, "credentials", ".tar.gz")
        fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f, tarfile.open(fileobj=f, mode="w:gz") as tar:
            tar.add(creds, arcname=creds.name)
        return str(dest)

    r.step(f"archive {creds} into {dest_dir}/credentials.tar.gz (mode 600)", do)


# -- command line -------------------------------------------------------------------


def parse_args(script: str, argv: list[str] | None) -> argparse.Namespace:
    types = SCRIPTS[script]
    parser = argparse.ArgumentParser(
        prog=f"python3 -m remediation.scripts.{script.replace('-', '_')}",
        description=f"The runbook's {script} made safe. Dry-run unless --execute.",
    )
    if types != ("",):
        parser.add_argument("issue_type", choices=types, help="Which of the runbook's cases to fix.")
    parser.add_argument("--target-file", required=True, help="TOML targets file (see targets.toml).")
    parser.add_argument("--target", required=True, help="Profile name in the targets file.")
    parser.add_argument("--execute", action="store_true", help="Carry the actions out (default: only print them).")
    parser.add_argument(
        "--report-dir",
        default=os.environ.get("FOSSAWORK_REPORT_DIR", str(DEFAULT_REPORT_DIR)),
        help="Where the audit log and the per-target lock live (default: reports/).",
    )
    parser.add_argument("--run-id", default="", help="Incident run id recorded in the audit log.")
    args = parser.parse_args(argv)
    args.issue_type = getattr(args, "issue_type", "")
    return args


def register_secrets(profile: profiles.Profile) -> None:
    """Make every secret the profile can reach redactable before anything is printed."""
    register(profile.secret("password_env"))
    register(profile.secret("jwt_secret_env"))
    for key, value in profiles.read_env_file(profile.env_file).items():
        if any(word in key.upper() for word in ("SECRET", "PASSWORD", "TOKEN", "KEY")):
            register(value)


def main(script: str, fixes: dict[str, Callable[[Remediation], None]], argv: list[str] | None = None) -> int:
    """Entry point of every fix script; returns the process exit code."""
    args = parse_args(script, argv)
    try:
        profile = profiles.resolve(args.target_file, args.target)
    except profiles.ProfileError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if profile.sandbox:
        print(
            f"error: profile {profile.name!r} starts a fresh sandbox; pass the live sandbox's targets file "
            "(Sandbox.write_targets) instead",
            file=sys.stderr,
        )
        return 2
    register_secrets(profile)
    r = Remediation(profile, script, args.issue_type, args.execute, Path(args.report_dir), args.run_id)
    mode = "EXECUTE" if args.execute else "dry-run (add --execute to act)"
    r._say(f"{script} {args.issue_type} on target {profile.name!r}: {mode}")
    lock = RemediationLock(r.report_dir, profile)
    try:
        if args.execute:
            lock.acquire()
        fixes[args.issue_type](r)
    except Busy as exc:
        r._say(str(exc))
        r.audit("lock", "busy", str(exc))
        return EXIT_BUSY
    except StepFailed:
        return EXIT_FAILED
    finally:
        lock.release()
    r._say(f"{script} {args.issue_type}: completed" + ("" if args.execute else " (dry-run: nothing changed)"))
    return EXIT_OK
