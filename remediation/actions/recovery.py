"""Recovery of a damaged database: copied and verified before anything moves, every step journaled.

The runbook removes the database and restores a dump. Here:

* no writer may be live: every process with the database or its sidecars open must be the backend
  named by its pid file or unit (which is stopped first), else the fix refuses;
* the original (with its -wal/-shm/-journal) is copied into ``<backup_dir>/quarantine/<stamp>/`` and
  verified by sha256 before anything else happens; nothing on the target moves until the install, so a
  full disk or a crash before it leaves the original in place and openable;
* every row on a readable page is salvaged (``observe.db.readable_rows``), whatever the local
  ``sqlite3`` can do; its ``.recover`` is tried too when present, and the result that keeps the most rows
  wins; the newest verified backup is compared and reported, and installed only with
  ``--accept-older-backup`` (it is older data than the original);
* the install keeps the original's owner, group and mode, and rows per table and orphaned foreign keys
  are counted before and after: a loss is reported per table, never hidden;
* an intent journal (``<backup_dir>/recovery/journal.json``) is written before each step, so a rerun after
  a crash (SIGKILL) or a failed step resumes from the quarantined original, never from whatever file now
  sits at the database path.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
from contextlib import closing
from pathlib import Path

from observe.db import connect_ro, foreign_key_orphans, integrity, readable_rows, sidecars, table_counts, user_tables
from observe.processes import Processes
from observe.services import describe_pid, holders, service_process
from remediation.actions.core import Remediation, StepFailed, refuse_links, stamp, unique_path
from remediation.actions.services import start_service, stop_service
from remediation.storage import write_atomically


def recover_database(r: Remediation) -> None:
    """Quarantine (copy, verify), recover every readable row, install with the original's owner, count the loss."""
    db = Path(r.profile.db_path)
    backups = Path(r.profile.backup_dir)
    refuse_links(r, [db.parent, *sidecars(db)])
    journal = Journal(backups / "recovery" / "journal.json")
    state = journal.load()
    if state is not None and state.get("db") != str(db):
        r.refuse(f"{journal.path} belongs to another database ({state.get('db')}); finish or move it first")
    if state is None and integrity(db) == ["ok"]:
        r.refuse(f"{db} passes integrity_check: nothing to recover")
    ensure_no_writer(r, db)
    stop_service(r, "backend")
    if state is not None:
        r.observe("unfinished recovery resumed", lambda: f"step {state['step']} of {journal.path}")
    if state is None or state["step"] == "quarantining":
        # Nothing on the target moves before the install: an interrupted copy is simply made again.
        if state is not None:
            shutil.rmtree(state["quarantine"], ignore_errors=True)
        state = quarantine(r, db, backups, journal)
    if not r.execute:
        r.step(
            "salvage every readable row, compare with the newest verified backup, keep the one that loses least", _no
        )
        r.step(f"install the result at {db} with the original's owner, group and mode", _no)
        start_service(r, "backend")
        return
    if state["step"] in ("quarantining", "quarantined", "recovering"):
        state = recover(r, db, backups, journal, state)
    if state["step"] in ("recovered", "installing"):
        state = install(r, db, journal, state)
    r.observe("rows per table before -> after", lambda: state["report"])
    r.record_loss(loss_of(state["report"]))
    start_service(r, "backend")
    journal.finish(state)


def _no() -> None:
    """Dry-run placeholder: the step is described, not carried out."""


def ensure_no_writer(r: Remediation, db: Path) -> None:
    """Refuse while a process other than the backend of the pid file or unit has the database or sidecars open.

    Open files of every process count, and so does any running process that matches the profile's
    backend rule: an application holding no file open between requests still writes.
    """
    backend = service_process(r.profile, "backend")
    ours = {backend.pid, *(c.pid for c in backend.children(recursive=True))} if backend else set()
    ours.add(os.getpid())  # this fix itself (and the test or tool that runs it in-process)
    files = [p for p in sidecars(db) if p.exists()]
    others = {pid for pid in holders(files) if pid not in ours}
    rule = Processes().matching(r.profile.backend_process, r.profile.backend_cwd) if r.profile.backend_cwd else []
    others |= {p.pid for p in rule if p.pid not in ours}
    found = r.observe("processes using the database besides the known backend", lambda: sorted(others))
    if found:
        named = "; ".join(describe_pid(pid) for pid in found)
        r.refuse(
            f"a writer that is not the backend of the pid file or unit is live ({named}): "
            "stop it by its service manager first, or name it in the profile (pid_dir, backend_unit)"
        )


# -- the steps ----------------------------------------------------------------------


def quarantine(r: Remediation, db: Path, backups: Path, journal: Journal) -> dict:
    """Copy the original and its sidecars into quarantine and verify them; nothing on the target moves."""
    present = [p for p in sidecars(db) if p.exists()]
    if not present:
        r.refuse(f"{db} does not exist: nothing to recover (restore a backup by hand if that is what is needed)")
    st = db.stat()
    if os.geteuid() != 0 and st.st_uid != os.geteuid():
        r.refuse(f"{db} belongs to uid {st.st_uid}: run as root or as that user to keep its owner")
    target = unique_path(backups / "quarantine", stamp())
    state = {
        "db": str(db),
        "step": "quarantining",
        "started": stamp(),
        "quarantine": str(target),
        "owner": [st.st_uid, st.st_gid, st.st_mode & 0o7777],
    }
    if r.execute:
        journal.save(state)

    def do() -> str:
        target.mkdir(parents=True, mode=0o700)
        try:
            state["files"] = {p.name: copy_verified(p, target / p.name) for p in present}
        except OSError:
            shutil.rmtree(target, ignore_errors=True)  # our partial copy only: the original was never touched
            raise
        return f"{', '.join(p.name for p in present)} -> {target} (sha256 verified)"

    r.step(f"copy {db} and its -wal/-shm/-journal into {target}/ and verify them (the original stays)", do)
    state["step"] = "quarantined"
    if r.execute:
        journal.save(state)
    return state


def recover(r: Remediation, db: Path, backups: Path, journal: Journal, state: dict) -> dict:
    """Salvage the quarantined original (and try sqlite3 .recover); pick what keeps most; compare the backup."""
    source = Path(state["quarantine"])
    for name, digest in state["files"].items():
        if sha256(source / name) != digest:
            r.fail(f"{source / name} no longer matches its quarantine checksum; escalate")
    work = unique_path(backups / "recovery", stamp())
    state.update(step="recovering", work=str(work))
    journal.save(state)

    def do() -> str:
        work.mkdir(parents=True, mode=0o700)
        # Work on copies: opening the original would replay its WAL or roll back a hot journal.
        for name in state["files"]:
            shutil.copy2(source / name, work / name)
        candidates = {"salvage": salvage(work / db.name, work / "salvaged.db")}
        if shutil.which("sqlite3"):
            candidates["sqlite3 .recover"] = cli_recover(work / db.name, work / "cli-recovered.db")
        usable = {k: v for k, v in candidates.items() if v["ok"]}
        backup = newest_verified_backup(backups, db.stem, work / "backup.db")
        state["candidates"] = {**candidates, **({"newest verified backup": backup} if backup else {})}
        if backup and (
            r.accept_older_backup and (not usable or backup["rows"] > max(v["rows"] for v in usable.values()))
        ):
            usable = {"newest verified backup": backup}
        if not usable:
            hint = f"; the newest verified backup has {backup['rows']} rows" if backup else ""
            raise StepFailed(
                f"no row could be recovered from the original{hint}: it stays in place; escalate "
                "(rerun with --accept-older-backup to install the older backup instead)"
            )
        chosen = max(usable, key=lambda k: usable[k]["rows"])
        state.update(chosen=chosen, result=usable[chosen]["path"], result_sha256=sha256(Path(usable[chosen]["path"])))
        return "; ".join(f"{k}: {v['summary']}" for k, v in state["candidates"].items()) + f"; chosen: {chosen}"

    r.step("salvage every row on a readable page, try sqlite3 .recover, compare the newest verified backup", do)
    state["step"] = "recovered"
    journal.save(state)
    return state


def install(r: Remediation, db: Path, journal: Journal, state: dict) -> dict:
    """Replace the database with the recovered file, keeping the original's owner, group and mode."""
    result = Path(state["result"])
    if sha256(result) != state["result_sha256"]:
        r.fail(f"{result} changed since it was verified; escalate")
    state["step"] = "installing"
    journal.save(state)
    uid, gid, mode = state["owner"]

    def do() -> str:
        if sha256_or_none(db) != state["result_sha256"]:
            tmp = unique_path(db.parent, f".{db.name}.recovered")
            copy_verified(result, tmp, owner=(uid, gid, mode))
            for side in sidecars(db)[1:]:
                moved_aside(side, Path(state["quarantine"]), state["files"])
            live = sha256_or_none(db)
            if live is not None and db.name not in state["files"]:
                raise StepFailed(f"{db} appeared during the recovery; escalate")
            if live is not None and live != state["files"].get(db.name):
                # A fresh file the application made while we worked: kept beside the quarantined original.
                shutil.copy2(db, unique_path(Path(state["quarantine"]), f"{db.name}.appeared"))
            os.replace(tmp, db)
            fsync_dir(db.parent)
        return f"{db} ({mode:o}, uid {uid}, gid {gid})"

    r.step(f"install the recovered database at {db} with the original's owner, group and mode", do)
    after = {"rows": table_counts(db), "orphans": foreign_key_orphans(db) or {}}
    state["report"] = report(state["candidates"][state["chosen"]], after)
    state["step"] = "installed"
    journal.save(state)
    return state


# -- candidates -----------------------------------------------------------------------


def salvage(src: Path, dest: Path) -> dict:
    """Copy the schema and every row on a readable page into a new file; per table: rows, and rowid gaps."""
    tables, gaps, errors = {}, {}, {}
    try:
        with closing(sqlite3.connect(src)) as conn, closing(sqlite3.connect(dest, isolation_level=None)) as out:
            schema = conn.execute(
                "SELECT type, name, sql FROM sqlite_master WHERE sql IS NOT NULL AND name NOT LIKE 'sqlite_%'"
            ).fetchall()
            for kind, _, sql in schema:
                if kind == "table":
                    out.execute(sql)
            for kind, name, _ in schema:
                if kind != "table":
                    continue
                table_gaps: list = []
                out.execute("BEGIN")
                count = 0
                try:
                    for row in readable_rows(conn, name, table_gaps):
                        out.execute(f'INSERT INTO "{name}" VALUES ({", ".join("?" * (len(row) - 1))})', row[1:])
                        count += 1
                except sqlite3.DatabaseError as exc:  # WITHOUT ROWID or a damaged schema: what was read stays
                    errors[name] = str(exc)
                out.execute("COMMIT")
                tables[name], gaps[name] = count, table_gaps
            for kind, name, sql in schema:
                if kind != "table":
                    try:
                        out.execute(sql)
                    except sqlite3.Error as exc:
                        errors[name] = f"not recreated: {exc}"
    except sqlite3.Error as exc:
        return {"ok": False, "path": str(dest), "rows": 0, "summary": f"unreadable ({exc})"}
    lost = {t: sum(hi - lo + 1 for lo, hi in g if hi is not None) for t, g in gaps.items()}
    ok = integrity(dest) == ["ok"] and bool(tables)
    before = {t: tables[t] + lost[t] for t in tables}
    return {
        "ok": ok,
        "path": str(dest),
        "rows": sum(tables.values()),
        "before": before,
        "gaps": {t: g for t, g in gaps.items() if g},
        "errors": errors,
        "summary": f"{sum(tables.values())} rows, {sum(lost.values())} on unreadable pages",
    }


def cli_recover(src: Path, dest: Path) -> dict:
    """``sqlite3 src .recover | sqlite3 dest`` (Debian 12's 3.40 fails on every input: then it is not used)."""
    try:
        dump = subprocess.run(["sqlite3", str(src), ".recover"], capture_output=True, timeout=600, check=True)
        subprocess.run(["sqlite3", str(dest)], input=dump.stdout, capture_output=True, timeout=600, check=True)
    except (subprocess.SubprocessError, OSError) as exc:
        return {"ok": False, "path": str(dest), "rows": 0, "summary": f"failed ({exc.__class__.__name__})"}
    counts = table_counts(dest)
    rows = sum(v for k, v in counts.items() if isinstance(v, int) and k != "lost_and_found")
    ok = integrity(dest) == ["ok"]
    return {"ok": ok, "path": str(dest), "rows": rows, "summary": f"{rows} rows" + ("" if ok else ", not verified")}


def newest_verified_backup(backups: Path, stem: str, dest: Path) -> dict | None:
    """The newest backup of this database that passes integrity_check, copied to ``dest``, with its rows."""
    found = sorted(backups.glob(f"{stem}-*.db"), key=lambda p: p.stat().st_mtime, reverse=True)
    for candidate in found:
        if integrity(candidate) == ["ok"]:
            with closing(connect_ro(candidate)) as src, closing(sqlite3.connect(dest)) as out:
                src.backup(out)
                if not user_tables(out):
                    continue
            rows = sum(v for v in table_counts(dest).values() if isinstance(v, int))
            return {"ok": True, "path": str(dest), "rows": rows, "summary": f"{candidate.name}: {rows} rows"}
    return None


def report(chosen: dict, after: dict) -> dict:
    """Per table: rows before (readable + unreadable), after, lost, and orphaned foreign keys after."""
    before = chosen.get("before", {})
    out = {}
    for table in sorted(set(before) | set(after["rows"])):
        b, a = before.get(table), after["rows"].get(table)
        out[table] = {"before": b, "after": a, "orphans": after["orphans"].get(table, 0)}
        if isinstance(b, int) and isinstance(a, int):
            out[table]["lost"] = max(0, b - a)
    return out


def loss_of(report: dict) -> dict:
    """The tables whose rows were lost or whose foreign keys now point at nothing."""
    return {t: v for t, v in report.items() if v.get("lost") or v.get("orphans")}


# -- files ------------------------------------------------------------------------------


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_or_none(path: Path) -> str | None:
    try:
        return sha256(path)
    except FileNotFoundError:
        return None


def copy_verified(src: Path, dest: Path, owner: tuple[int, int, int] | None = None) -> str:
    """Copy ``src`` to the new file ``dest`` (owner, group, mode set before any byte), fsync, compare sha256."""
    uid, gid, mode = owner if owner else (None, None, 0o600)
    fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        if uid is not None:
            os.fchown(fd, uid, gid)
        os.fchmod(fd, mode)
        digest = hashlib.sha256()
        with open(src, "rb") as handle:
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
                view = memoryview(chunk)
                while view:  # a full disk first writes short, then raises ENOSPC
                    view = view[os.write(fd, view) :]
        os.fsync(fd)
    except OSError:
        os.close(fd)
        dest.unlink(missing_ok=True)
        raise
    os.close(fd)
    if sha256(dest) != digest.hexdigest():
        raise StepFailed(f"{dest} does not hold the bytes of {src}")
    return digest.hexdigest()


def moved_aside(side: Path, quarantine: Path, quarantined: dict) -> None:
    """Take a stale -wal/-shm/-journal away from the database path; its bytes are already in quarantine.

    Left in place, the old WAL would be replayed into the recovered file. Only a sidecar whose content
    equals its quarantined copy is removed; one that changed since is kept in quarantine first.
    """
    live = sha256_or_none(side)
    if live is None:
        return
    if quarantined.get(side.name) != live:
        shutil.copy2(side, unique_path(quarantine, f"{side.name}.later"))
    side.unlink()


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Journal:
    """The intent journal of one recovery: written (atomically) before each step, finished when done."""

    def __init__(self, path: Path):
        self.path = path

    def load(self) -> dict | None:
        try:
            return json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise StepFailed(f"recovery journal {self.path} unreadable ({exc}); escalate") from None

    def save(self, state: dict) -> None:
        write_atomically(self.path, json.dumps(state, indent=1), mode=0o600)

    def finish(self, state: dict) -> None:
        """Keep the journal as the record of this recovery, under a name no rerun resumes from."""
        state["step"] = "done"
        self.save(state)
        os.replace(self.path, unique_path(self.path.parent, f"journal-{state['started']}", ".json"))
