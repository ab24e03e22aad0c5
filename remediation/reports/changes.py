"""What changed since the last healthy run: two fingerprints (``observe.fingerprint``) compared, in on-call words.

Each difference is one change: a line an on-call engineer reads ("SECRET_KEY in backend/.env changed",
"backend restarted at 03:12 UTC (was pid 812, running since Mon 28 Nov 09:00 UTC)", "node_modules: vite
removed (was 7.3.8)"), when it happened where the facts say (a process's start, a file's modification),
and how likely it is to be the cause: deliberate changes first (configuration, code, packages, the
database's schema), then restarts, then data and logs, then the host. A fact unknown on either side is
listed as such, never as a change. Quantities that move in every healthy run (log sizes, row counts,
free space) count only past a threshold: a log that appeared, shrank or more than doubled by 10 MiB, a
table that lost rows or more than doubled by 1,000, 10 points of free disk, 20 of free memory.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from observe.fingerprint import MISSING, UNKNOWN, is_unknown, now_iso

# How likely a kind of change is to be the cause: the terminal shows the three most relevant changes.
RANKS = {"config": 1, "code": 1, "packages": 1, "schema": 1, "restart": 2, "data": 3, "logs": 3, "host": 4}
SHOWN = 3  # changes printed in the terminal summary
GROUP = 6  # more names than this in one change are counted, the first few named
MiB = 1024**2


class Diff:
    """The changes and unknown facts found comparing two fingerprints."""

    def __init__(self, now: str):
        self.now = now
        self.changes: list[dict] = []
        self.unknown: list[str] = []

    def add(self, fact: str, kind: str, text: str, when: str | None = None) -> None:
        self.changes.append({"fact": fact, "kind": kind, "rank": RANKS[kind], "when": when, "text": text, "new": True})

    def known(self, what: str, before, after) -> bool:
        """Whether both sides were read; else the fact is listed as unknown (which side, and why)."""
        for side, fact in (("in the last healthy run", before), ("now", after)):
            if is_unknown(fact):
                self.unknown.append(f"{what}: unknown {side} ({fact[UNKNOWN]})")
                return False
        return True

    def at(self, iso: str | None) -> str:
        return at(iso, self.now)


def at(iso: str | None, now: str) -> str:
    """A time as read mid-incident: '03:12 UTC' on the run's own day, 'Mon 28 Nov 09:00 UTC' before it."""
    if not iso:
        return "an unknown time"
    moment, today = datetime.fromisoformat(iso).astimezone(UTC), datetime.fromisoformat(now).astimezone(UTC)
    return f"{moment:%H:%M} UTC" if moment.date() == today.date() else f"{moment:%a %d %b %H:%M} UTC"


def size(n: int) -> str:
    for unit, scale in (("GiB", 1024**3), ("MiB", MiB), ("KiB", 1024)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


def names(items: list[str]) -> str:
    """'a, b, c', or the count and the first few when there are many."""
    if len(items) <= GROUP:
        return ", ".join(items)
    return f"{len(items)} of them: {', '.join(items[:GROUP])}, ..."


def short(path: str) -> str:
    """The last two parts of a path ('backend/.env'): the file an engineer recognises."""
    return str(Path(*Path(path).parts[-2:]))


def compare(before: dict, after: dict) -> Diff:
    """Every difference between two fingerprints of one target (``before`` the older)."""
    diff = Diff(after["taken"])
    old, new = before["sources"], after["sources"]
    same_key = before.get("key_id") == after.get("key_id")
    if not same_key:
        diff.unknown.append(
            "configuration values and command lines: the fingerprint key changed since the last healthy run, "
            "so their hashes cannot be compared"
        )
    for name, compare_source in SOURCES.items():
        if diff.known(name, old.get(name, {UNKNOWN: "not recorded"}), new.get(name, {UNKNOWN: "not recorded"})):
            compare_source(diff, old[name], new[name], same_key)
    return diff


# -- per source -------------------------------------------------------------------------------------------------


def _processes(diff: Diff, before: dict, after: dict, same_key: bool) -> None:
    for which in sorted(set(before) | set(after)):
        was, now = before.get(which, []), after.get(which, [])
        if {(p["pid"], p["started"]) for p in was} == {(p["pid"], p["started"]) for p in now}:
            continue
        pids = ", ".join(str(p["pid"]) for p in was)
        since = diff.at(min((p["started"] for p in was if p["started"]), default=None))
        latest = max((p["started"] for p in now if p["started"]), default=None)
        if not now:
            diff.add(f"process.{which}", "restart", f"{which} not running (was pid {pids}, running since {since})")
            continue
        if not was:
            diff.add(f"process.{which}", "restart", f"{which} started at {diff.at(latest)} (was not running)", latest)
            continue
        text = f"{which} restarted at {diff.at(latest)} (was pid {pids}, running since {since})"
        diff.add(f"process.{which}", "restart", text, latest)
        if same_key and {p["command_hash"] for p in was} != {p["command_hash"] for p in now}:
            diff.add(f"command.{which}", "config", f"{which} command line changed: now {now[0]['command']}", latest)
        users = (sorted({p["user"] for p in was}), sorted({p["user"] for p in now}))
        if users[0] != users[1]:
            text = f"{which} runs as {', '.join(users[1])} (was {', '.join(users[0])})"
            diff.add(f"user.{which}", "config", text, latest)


def _code(diff: Diff, before: dict, after: dict, same_key: bool) -> None:
    for name in sorted(set(before["trees"]) | set(after["trees"])):
        was, now = before["trees"].get(name, MISSING), after["trees"].get(name, MISSING)
        if was == MISSING and now == MISSING:
            continue
        if now == MISSING:
            diff.add(f"code.{name}", "code", f"{name} source tree {was['dir']} missing (was {was['files']} files)")
        elif was == MISSING:
            text = f"{name} source tree {now['dir']} appeared ({now['files']} files)"
            diff.add(f"code.{name}", "code", text, now["newest_time"])
        elif was["hash"] != now["hash"]:
            text = (
                f"{name} source files changed in {now['dir']}: {now['files']} files (was {was['files']}), "
                f"newest {now['newest']} modified {diff.at(now['newest_time'])}"
            )
            diff.add(f"code.{name}", "code", text, now["newest_time"])
    for path in sorted(set(before["checkouts"]) | set(after["checkouts"])):
        was, now = before["checkouts"].get(path), after["checkouts"].get(path)
        if was is None or now is None:
            state = "no longer a git work tree" if now is None else "now a git work tree"
            diff.add(f"git.{path}", "code", f"checkout {path}: {state}", None if now is None else now["moved"])
        elif diff.known(f"commit of {path}", was["commit"], now["commit"]) and was["commit"] != now["commit"]:
            branch = f" ({now['ref'].removeprefix('refs/heads/')})" if now["ref"] else " (detached HEAD)"
            if was["ref"] != now["ref"]:
                branch += f", was {was['ref'].removeprefix('refs/heads/') or 'a detached HEAD'}"
            text = f"checkout {path}: commit {was['commit'][:10]} → {now['commit'][:10]}{branch}"
            diff.add(f"git.{path}", "code", text, now["moved"])


def _packages(diff: Diff, label: str, fact: str, before, after) -> None:
    """Packages removed, added and upgraded (python or node_modules); names are compared only when both lists
    are complete, versions only where both are known."""
    if before == MISSING or after == MISSING:
        if before != after:
            if after == MISSING:
                diff.add(fact, "packages", f"{label} missing (was {len(before['packages'])} packages)")
            else:
                diff.add(fact, "packages", f"{label} appeared ({len(after['packages'])} packages)", after["changed"])
        return
    was, now, when = before["packages"], after["packages"], after["changed"]
    if before["complete"] and after["complete"]:
        gone = sorted(set(was) - set(now))
        if gone:
            version = f" (was {was[gone[0]]})" if len(gone) == 1 and was[gone[0]] else ""
            diff.add(f"{fact}.removed", "packages", f"{label}: {names(gone)} removed{version}", when)
        added = sorted(set(now) - set(was))
        if added:
            diff.add(f"{fact}.added", "packages", f"{label}: {names(added)} added", when)
    moved = [f"{n} {was[n]} → {now[n]}" for n in sorted(set(was) & set(now)) if was[n] and now[n] and was[n] != now[n]]
    if moved:
        diff.add(f"{fact}.versions", "packages", f"{label}: {names(moved)}", when)


def _python(diff: Diff, before: dict, after: dict, same_key: bool) -> None:
    if before["prefix"] != after["prefix"]:
        text = f"backend interpreter now {after['prefix']} (was {before['prefix']})"
        diff.add("python.prefix", "packages", text, after["changed"])
    _packages(diff, "python packages", "python", before, after)


def _npm(diff: Diff, before, after, same_key: bool) -> None:
    _packages(diff, "node_modules", "npm", before, after)


def _config(diff: Diff, before: dict, after: dict, same_key: bool) -> None:
    if not same_key:
        return  # listed as unknown once, in compare()
    was, now = before["env_file"], after["env_file"]
    if diff.known(".env file", was, now) and was != now and was is not None and now is not None:
        if now == MISSING or was == MISSING:
            path = (was if now == MISSING else now)["path"]
            state = f"missing (was {len(was['keys'])} keys)" if now == MISSING else "appeared"
            diff.add("env", "config", f"{short(path)} {state}", None if now == MISSING else now["changed"])
        else:
            where, when = short(now["path"]), now["changed"]
            old, new = was["keys"], now["keys"]
            for key in sorted(set(old) & set(new)):
                if old[key] != new[key]:
                    diff.add(f"env.{key}", "config", f"{key} in {where} changed (file modified {diff.at(when)})", when)
            if removed := sorted(set(old) - set(new)):
                diff.add("env.removed", "config", f"{names(removed)} removed from {where}", when)
            if added := sorted(set(new) - set(old)):
                diff.add("env.added", "config", f"{names(added)} added to {where}", when)
    old, new = before["profile"], after["profile"]
    if changed := sorted(k for k in set(old) & set(new) if old[k] != new[k]):
        diff.add("profile", "config", f"profile: {names(changed)} changed")
    if keys := sorted(set(old) ^ set(new)):
        diff.add("profile.keys", "config", f"profile keys added or removed: {names(keys)}")


def _database(diff: Diff, before, after, same_key: bool) -> None:
    if before == MISSING or after == MISSING:
        if after == MISSING and before != MISSING:
            text = f"database file {before['file']['path']} missing (was {size(before['file']['size'])})"
            diff.add("db.file", "schema", text)
        elif before == MISSING and after != MISSING:
            text = f"database file {after['file']['path']} appeared ({size(after['file']['size'])})"
            diff.add("db.file", "schema", text, after["file"]["modified"])
        return
    was, now = before["file"], after["file"]
    if was["inode"] != now["inode"]:
        text = f"database file {now['path']} replaced at {diff.at(now['replaced'])}"
        diff.add("db.file", "schema", text, now["replaced"])
    _schema(diff, before["schema"], after["schema"], now["modified"])
    if isinstance(before["schema"], dict) and isinstance(after["schema"], dict):
        pages = (before["schema"]["pages"], after["schema"]["pages"])
        if pages[1] < pages[0] or pages[1] >= 2 * pages[0] + 1:
            diff.add("db.pages", "data", f"database pages {pages[0]} → {pages[1]}", now["modified"])
    uncounted = []
    for table in sorted(set(before["rows"]) & set(after["rows"])):
        rows = (before["rows"][table], after["rows"][table])
        if UNKNOWN in rows:
            uncounted.append(table)
        elif rows[1] < rows[0] or (rows[1] >= 2 * rows[0] and rows[1] - rows[0] >= 1000):
            diff.add(f"db.rows.{table}", "data", f"table {table}: {rows[1]} rows (was {rows[0]})", now["modified"])
    if uncounted:
        diff.unknown.append(f"rows of {names(uncounted)}: not counted within the fingerprint's time budget")


def _schema(diff: Diff, was, now, when: str) -> None:
    """The schema as a whole: its tables, or what the file is when it is no database."""
    if not diff.known("database schema", was, now) or was == now:
        return
    if not isinstance(was, dict) or not isinstance(now, dict):
        describe = lambda s: f"{len(s['tables'])} tables" if isinstance(s, dict) else s  # noqa: E731
        diff.add("db.schema", "schema", f"database is {describe(now)} (was {describe(was)})", when)
        return
    if was["hash"] != now["hash"] or was["user_version"] != now["user_version"]:
        parts = []
        if removed := [t for t in was["tables"] if t not in now["tables"]]:
            parts.append(f"tables removed: {names(removed)}")
        if added := [t for t in now["tables"] if t not in was["tables"]]:
            parts.append(f"tables added: {names(added)}")
        if was["user_version"] != now["user_version"]:
            parts.append(f"user_version {was['user_version']} → {now['user_version']}")
        detail = "; ".join(parts) or "same tables, their columns, indexes or triggers differ"
        diff.add("db.schema", "schema", f"database schema changed: {detail}", when)
    if was["journal_mode"] != now["journal_mode"]:
        text = f"database journal mode {was['journal_mode']} → {now['journal_mode']}"
        diff.add("db.journal", "schema", text, when)


def _logs(diff: Diff, before, after, same_key: bool) -> None:
    if before == MISSING or after == MISSING:
        if before != after:
            where = (before if after == MISSING else after)["dir"]
            diff.add("logs.dir", "logs", f"log directory {where} {'missing' if after == MISSING else 'appeared'}")
        return
    was, now = before["files"], after["files"]
    appeared = sorted(set(now) - set(was), key=lambda f: now[f]["modified"], reverse=True)
    if len(appeared) == 1:
        log = now[appeared[0]]
        text = f"log {appeared[0]} appeared: {size(log['size'])}, last entry {diff.at(log['last_entry'])}"
        diff.add("logs.appeared", "logs", text, log["modified"])
    elif appeared:
        diff.add("logs.appeared", "logs", f"new log files: {names(appeared)}", now[appeared[0]]["modified"])
    if before["complete"] and after["complete"] and (gone := sorted(set(was) - set(now))):
        diff.add("logs.gone", "logs", f"log files gone: {names(gone)}")
    for name in sorted(set(was) & set(now)):
        old, new = was[name]["size"], now[name]["size"]
        if new < old:
            text = f"log {name} shrank from {size(old)} to {size(new)} (rotated or truncated)"
        elif new >= 2 * old and new - old >= 10 * MiB:
            text = f"log {name} grew from {size(old)} to {size(new)}, last entry {diff.at(now[name]['last_entry'])}"
        else:
            continue
        diff.add(f"logs.size.{name}", "logs", text, now[name]["modified"])


def _host(diff: Diff, before: dict, after: dict, same_key: bool) -> None:
    seen = set()
    for name in sorted(set(before["disks"]) & set(after["disks"])):
        was, now = before["disks"][name], after["disks"][name]
        if not diff.known(f"free space of {name}", was, now) or (now["free"], now["total"]) in seen:
            continue
        seen.add((now["free"], now["total"]))  # disk_path and the database on one filesystem: said once
        if abs(now["free_percent"] - was["free_percent"]) >= 10:
            where = f"disk {now['path']}" if name == "disk_path" else f"filesystem of the database {now['path']}"
            free = f"{size(now['free'])} free, {now['free_percent']:g}% (was {was['free_percent']:g}%)"
            diff.add(f"host.disk.{name}", "host", f"{where}: {free}")
    memory = (before["memory_available_percent"], after["memory_available_percent"])
    if memory[0] - memory[1] >= 20:
        diff.add("host.memory", "host", f"memory available {memory[1]:g}% (was {memory[0]:g}%)")
    load, cpus = (before["load1"], after["load1"]), after["cpus"]
    if load[1] > cpus >= load[0]:
        diff.add("host.load", "host", f"load average {load[1]:g} on {cpus} CPUs (was {load[0]:g})")


SOURCES = {
    "processes": _processes,
    "code": _code,
    "python": _python,
    "npm": _npm,
    "config": _config,
    "database": _database,
    "logs": _logs,
    "host": _host,
}


# -- the incident's section ----------------------------------------------------------------------------------


def newest_first(changes: list[dict]) -> list[dict]:
    """Changes with a time, newest first, then those whose time is not known; the more relevant first at equal
    times (a restart and the .env edit that caused it share a second)."""
    timed = sorted((c for c in changes if c["when"]), key=lambda c: c["rank"])
    timed.sort(key=lambda c: c["when"], reverse=True)  # stable: equal times keep the order by relevance
    return timed + sorted((c for c in changes if not c["when"]), key=lambda c: c["rank"])


def most_relevant(changes: list[dict], n: int = SHOWN) -> list[dict]:
    """The ``n`` changes most likely to be the cause: by kind (configuration and code first), then newest."""
    return sorted(newest_first(changes), key=lambda c: c["rank"])[:n]


def section(
    target: str, current: dict | None, baseline: dict | None, previous: dict | None, note: str | None = None
) -> dict:
    """One target's "changed since the last healthy run": ``current`` against ``baseline`` (the last healthy
    run's fingerprint); a change also found against ``previous`` (the last run's) is marked new."""
    out = {"target": target, "since": None, "since_run": None, "note": note, "changes": [], "unknown": []}
    if current is None or note:
        return out
    if baseline is None:
        out["note"] = "no earlier healthy run of this target recorded beside the reports"
        return out
    diff = compare(baseline, current)
    if previous is not None and previous.get("run_id") != baseline.get("run_id"):
        recent = {c["fact"] for c in compare(previous, current).changes}
        for change in diff.changes:
            change["new"] = change["fact"] in recent
    out.update(since=baseline["taken"], since_run=baseline.get("run_id"), unknown=diff.unknown)
    out["changes"] = newest_first(diff.changes)
    return out


def terminal_lines(sections: list[dict]) -> list[str]:
    """The summary's lines: per target, when its last healthy run was and the three most relevant changes."""
    lines = []
    for sec in sections:
        if sec["since"] is None:
            lines.append(f"changed since the last healthy run of {sec['target']}: not known ({sec['note']})")
            continue
        head = f"changed since the last healthy run of {sec['target']} ({at(sec['since'], now_iso())})"
        if not sec["changes"]:
            lines.append(f"{head}: nothing the fingerprint records")
            continue
        lines.append(f"{head}:")
        lines += [f"    {c['text']}" for c in most_relevant(sec["changes"])]
        if len(sec["changes"]) > SHOWN:
            lines.append(f"    ... {len(sec['changes']) - SHOWN} more in the incident report")
    return lines
