"""The target's fingerprint: what it is made of right now, as facts a later run can compare.

Most incidents follow a change (a deploy, an edited ``.env``, a restart, a package removed, a
migration, a disk filling up), and each run sees only the present. So each run also notes what
the target is: its backend and frontend processes, its code (the commit of its git checkout and a
stamp of its source files), its Python and npm packages, its configuration (``.env`` and the
profile: which keys exist and a keyed hash of each value, never the value), its database (file,
schema, journal mode, pages, rows per table), its logs and its host. ``remediation.reports.changes``
compares two fingerprints.

Everything here is read-only and bounded like the checks' own probes: small files are read with
:func:`observe.files.read_small` and log tails without blocking (a FIFO is an error, never a wait),
the database through :class:`observe.db.Database` (read-only, rows counted under a time budget),
directory walks stop after a number of entries, and no git command runs (git may take locks or
refresh its index: HEAD and the ref files are read as files). A fact that cannot be read is
``{"unknown": why}``; the comparison never counts it as a change.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import stat
import time
from datetime import UTC, datetime
from pathlib import Path

import psutil

from observe.db import SQLITE_HEADER, BudgetExceeded, Database, DatabaseUnavailable
from observe.files import NotARegularFile, read_small
from observe.logs import Logs, parse_line
from observe.processes import Proc, Processes, ProcessesUnavailable
from observe.profile import Profile, read_env_file
from observe.secrets import redact
from observe.services import service_process
from observe.system import filesystem_of

SCHEMA = "fossawork-fingerprint/1"
UNKNOWN = "unknown"
MISSING = "missing"
SERVICES = ("backend", "frontend")
# Row counts share one budget: on a big database COUNT(*) walks whole tables, and a table not counted in time is
# "unknown" rather than a delay of the verdict (the P1 path's own database probes take milliseconds).
ROW_BUDGET = 0.1
# Bounds that keep one fingerprint small (well under 1 MiB) and quick whatever the target holds.
MAX_PROCESSES = 16
MAX_COMMAND = 300
MAX_NAME = 200  # a package version, an env key, a table name: a hostile file cannot make one long
MAX_TREE_ENTRIES = 5000
MAX_PACKAGES = 3000
MAX_PACKAGE_ENTRIES = 20000
MAX_ENV_KEYS = 500
MAX_TABLES = 500
MAX_LOG_FILES = 200
LOG_TAIL = 8192  # bytes read from the end of a log for its last entry's time
MAX_GIT_LEVELS = 12
PACKED_REFS_LIMIT = 4 << 20
MAC_HEX = 16  # 64 bits of HMAC-SHA256: enough to tell two values apart, useless for guessing one

# The files whose stamps make a tree's "source" stamp: code and the declarations of its dependencies, not the data,
# logs, credentials or build output that live beside it in a deployment.
SOURCE_SUFFIXES = {
    "backend": {".py", ".pyi", ".toml", ".cfg", ".ini"},
    "frontend": {".ts", ".tsx", ".js", ".jsx", ".mjs", ".cjs", ".vue", ".svelte", ".css", ".scss", ".html", ".json"},
}
SKIPPED_DIRS = {"node_modules", "__pycache__", "venv", "env", "site-packages", "dist", "build", "logs", "backups"}
# An option whose value is a secret when it is written on a command line (--db-password=..., --api-key ...).
SECRET_OPTION = re.compile(r"(?i)(password|passwd|secret|token|key|credential)")


def now_iso(moment: float | None = None) -> str:
    """A POSIX time (default: now) as ISO 8601 UTC, to the second: what every time in a fingerprint is."""
    return datetime.fromtimestamp(time.time() if moment is None else moment, UTC).isoformat(timespec="seconds")


def unknown(why: str) -> dict:
    """A fact that could not be read, and why (one line)."""
    return {UNKNOWN: " ".join(str(why).split())[:300]}


def is_unknown(fact) -> bool:
    """Whether a fact is one that could not be read (see :func:`unknown`)."""
    return isinstance(fact, dict) and UNKNOWN in fact


def key_id(key: bytes) -> str:
    """Names the key a fingerprint's hashes were made with: hashes made with another key cannot be compared."""
    return hashlib.sha256(b"fossawork-fingerprint-key\0" + key).hexdigest()[:8]


def mac(key: bytes, *parts: str) -> str:
    """A keyed hash of a value (HMAC-SHA256 over its scope, name and value): equal values give equal hashes, and
    without the key a weak secret cannot be guessed from it."""
    return hmac.new(key, "\0".join(parts).encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()[:MAC_HEX]


def gather(profile: Profile, key: bytes, row_budget: float = ROW_BUDGET) -> dict:
    """The fingerprint of the target ``profile`` describes; each source on its own, so one that cannot be read
    leaves the others whole."""
    try:
        found = services(profile)
    except ProcessesUnavailable as exc:
        found = unknown(str(exc))
    backend = [] if is_unknown(found) else found["backend"]
    sources = {
        "processes": lambda: found if is_unknown(found) else {w: processes(p, key, w) for w, p in found.items()},
        "code": lambda: code(profile, backend),
        "python": lambda: python_packages(backend),
        "npm": lambda: npm_packages(Path(profile.frontend_dir)),
        "config": lambda: config(profile, key),
        "database": lambda: database(profile, row_budget),
        "logs": lambda: logs(profile),
        "host": lambda: host(profile),
    }
    return {
        "schema": SCHEMA,
        "taken": now_iso(),
        "key_id": key_id(key),
        "sources": {name: _read(source) for name, source in sources.items()},
    }


def _read(source):
    """One source's facts, or unknown naming why they could not be read."""
    try:
        return source()
    except (OSError, psutil.Error, DatabaseUnavailable, ValueError) as exc:
        return unknown(f"{exc.__class__.__name__}: {exc}")


# -- processes ----------------------------------------------------------------------------------------------


def services(profile: Profile) -> dict[str, list[Proc]]:
    """Each service's main process as its pid file names it (the service manager's own record, checked against the
    profile's command line); else its top-level processes as the checks match them, from one process-table scan
    (the scan reads every process: only a service without a usable pid file pays for it)."""
    found, snapshot = {}, None
    for which in SERVICES:
        proc = service_process(profile, which)
        try:
            if proc is not None:
                found[which] = [Proc(proc.pid, proc.ppid(), proc.name(), " ".join(proc.cmdline()), proc.cwd())]
                continue
        except psutil.Error:
            pass  # gone since its pid file was read, or not ours to inspect: the scan decides
        snapshot = snapshot or Processes()
        found[which] = snapshot.matching(profile.values[f"{which}_process"], profile.values[f"{which}_cwd"])
    return found


def processes(found: list, key: bytes, which: str) -> list[dict]:
    """pid, start time, user and command line of each process (a process gone since the snapshot is left out)."""
    out = []
    for proc in sorted(found, key=lambda p: p.pid)[:MAX_PROCESSES]:
        try:
            handle = psutil.Process(proc.pid)
            started, user = handle.create_time(), handle.username()
        except psutil.NoSuchProcess:
            continue
        except psutil.Error:
            started, user = None, UNKNOWN
        out.append(
            {
                "pid": proc.pid,
                "started": None if started is None else now_iso(started),
                "user": user,
                "cwd": proc.cwd,
                # Compared by its keyed hash; shown masked, since a command line can carry a password.
                "command": masked_command(proc.cmdline)[:MAX_COMMAND],
                "command_hash": mac(key, "command", which, proc.cmdline),
            }
        )
    return out


def masked_command(cmdline: str) -> str:
    """A command line with registered secrets and the values of secret-looking options masked."""
    words, out, hide_next = cmdline.split(" "), [], False
    for word in words:
        name, eq, _ = word.partition("=")
        if hide_next:
            word, hide_next = "***", False
        elif eq and SECRET_OPTION.search(name):
            word = f"{name}=***"
        elif word.startswith("-") and SECRET_OPTION.search(word):
            hide_next = True
        out.append(word)
    return redact(" ".join(out))


# -- code -----------------------------------------------------------------------------------------------------


def backend_dir(profile: Profile, backend: list) -> Path:
    """Where the backend's code is: its configured working directory, the running process's, or the database's."""
    if profile.backend_cwd:
        return Path(profile.backend_cwd)
    if backend and backend[0].cwd:
        return Path(backend[0].cwd)
    return Path(profile.db_path).parent


def code(profile: Profile, backend: list) -> dict:
    """The source stamp of the backend and frontend trees, and the commit of each git checkout holding them."""
    dirs = {"backend": backend_dir(profile, backend), "frontend": Path(profile.frontend_dir)}
    trees = {name: source_tree(path, SOURCE_SUFFIXES[name]) for name, path in dirs.items()}
    checkouts = {}
    for path in dirs.values():
        found = git_checkout(path)
        if found is not None:
            checkouts[found["path"]] = found
    return {"trees": trees, "checkouts": checkouts}


def source_tree(top: Path, suffixes: set[str]) -> dict | str:
    """A stamp of the source files under ``top``: a hash of their paths, sizes and modification times (contents
    are not read), how many, and the newest; at most MAX_TREE_ENTRIES entries are looked at."""
    if not top.is_dir():
        return MISSING
    digest, files, seen, newest = hashlib.sha256(), 0, 0, (0, "")
    stack = [top]
    while stack and seen < MAX_TREE_ENTRIES:
        try:
            entries = sorted(os.scandir(stack.pop()), key=lambda e: e.name)
        except OSError:
            continue  # a directory we may not list holds no stamp either way
        for entry in entries:
            seen += 1
            try:
                if entry.is_dir(follow_symlinks=False):
                    if not entry.name.startswith(".") and entry.name not in SKIPPED_DIRS:
                        stack.append(Path(entry.path))
                elif entry.is_file(follow_symlinks=False) and Path(entry.name).suffix in suffixes:
                    st = entry.stat(follow_symlinks=False)
                    rel = os.path.relpath(entry.path, top)
                    digest.update(f"{rel}\0{st.st_size}\0{st.st_mtime_ns}\n".encode("utf-8", "surrogateescape"))
                    files += 1
                    newest = max(newest, (st.st_mtime, rel))
            except OSError:
                continue
    return {
        "dir": str(top),
        "hash": digest.hexdigest()[:16],
        "files": files,
        "newest": newest[1],
        "newest_time": now_iso(newest[0]) if files else None,
        "complete": not stack,
    }


def git_checkout(start: Path) -> dict | None:
    """The git work tree holding ``start``, found by walking up: its commit, branch and when HEAD last moved.

    Read as files (HEAD, the ref, packed-refs), never with a git command. None when no work tree holds it.
    """
    here = start
    for _ in range(MAX_GIT_LEVELS):
        dotgit = here / ".git"
        if os.path.lexists(dotgit):
            return _git_head(here, dotgit)
        if here.parent == here:
            return None
        here = here.parent
    return None


def _git_head(tree: Path, dotgit: Path) -> dict:
    out = {"path": str(tree), "ref": "", "commit": None, "moved": None}
    try:
        gitdir = dotgit
        if dotgit.is_file():  # a linked work tree: ".git" names its own git directory
            text = read_small(dotgit, 4096).decode("utf-8", "replace").strip()
            gitdir = (tree / text.removeprefix("gitdir:").strip()).resolve()
        common = gitdir
        if (gitdir / "commondir").is_file():
            common = (gitdir / read_small(gitdir / "commondir", 4096).decode().strip()).resolve()
        head = read_small(gitdir / "HEAD", 4096).decode("utf-8", "replace").strip()
        moved = [(gitdir / "HEAD").stat().st_mtime]
        if not head.startswith("ref:"):
            out["commit"] = head
        else:
            ref = out["ref"] = head.removeprefix("ref:").strip()
            for base in (gitdir, common):
                if (base / ref).is_file():
                    out["commit"] = read_small(base / ref, 4096).decode().strip()
                    moved.append((base / ref).stat().st_mtime)
                    break
            else:
                packed = read_small(common / "packed-refs", PACKED_REFS_LIMIT).decode("utf-8", "replace")
                out["commit"] = next((line.split()[0] for line in packed.splitlines() if line.endswith(f" {ref}")), "")
        out["moved"] = now_iso(max(moved))
    except (OSError, UnicodeError) as exc:
        out["commit"] = unknown(f"cannot read the checkout's HEAD: {exc}")
    return out


# -- packages ---------------------------------------------------------------------------------------------------


def python_packages(backend: list) -> dict:
    """The distributions (name: version) installed where the backend's interpreter imports from."""
    if not backend:
        return unknown("no backend process: its interpreter is not known")
    prefix = interpreter_prefix(backend[0].pid, backend[0].cmdline)
    if prefix is None:
        return unknown(f"cannot tell the interpreter of backend pid {backend[0].pid}")
    site_dirs = sorted(
        {d for pattern in ("lib/python3*/site-packages", "lib/python3*/dist-packages") for d in prefix.glob(pattern)}
    )
    if not site_dirs:
        return unknown(f"no site-packages under {prefix}")
    packages: dict[str, str] = {}
    for site in site_dirs:
        for entry in _listing(site):
            stem, suffix = os.path.splitext(entry)
            if suffix in (".dist-info", ".egg-info"):
                name, _, version = stem.partition("-")
                packages.setdefault(name.lower().replace("_", "-")[:MAX_NAME], version.split("-py")[0][:MAX_NAME])
    return {
        "prefix": str(prefix),
        "packages": dict(sorted(packages.items())[:MAX_PACKAGES]),
        "complete": len(packages) <= MAX_PACKAGES,
        "changed": now_iso(max(site.stat().st_mtime for site in site_dirs)),
    }


def interpreter_prefix(pid: int, cmdline: str) -> Path | None:
    """The installation (or virtualenv) of a Python process: from its command line's first word when that is a
    path (a virtualenv's python is a link to the base one, which /proc/<pid>/exe would name), else its executable."""
    first = Path(cmdline.split(" ")[0]) if cmdline else None
    if first is not None and first.is_absolute() and (first.parent.parent / "pyvenv.cfg").is_file():
        return first.parent.parent
    try:
        exe = Path(psutil.Process(pid).exe())
    except psutil.Error:
        exe = first if first is not None and first.is_absolute() else None
    return None if exe is None else exe.parent.parent


def npm_packages(frontend: Path) -> dict | str:
    """The packages in node_modules (scoped ones as @scope/name) and the versions of those package.json declares."""
    modules = frontend / "node_modules"
    if not modules.is_dir():
        return MISSING
    names = []
    for entry in _listing(modules):
        if entry.startswith("."):
            continue  # .bin, .package-lock.json, .vite: npm's and vite's own files
        if entry.startswith("@"):
            names += [f"{entry}/{sub}" for sub in _listing(modules / entry) if not sub.startswith(".")]
        else:
            names.append(entry)
    names.sort()
    declared = declared_packages(frontend / "package.json")
    packages = {name: (installed_version(modules / name) if name in declared else "") for name in names}
    return {
        "packages": dict(list(packages.items())[:MAX_PACKAGES]),
        "complete": len(packages) <= MAX_PACKAGES,
        "changed": now_iso(modules.stat().st_mtime),
    }


def declared_packages(package_json: Path) -> set[str]:
    """The dependencies package.json declares (all kinds); none when it cannot be read."""
    try:
        data = json.loads(read_small(package_json))
    except (OSError, ValueError):
        return set()
    kinds = ("dependencies", "devDependencies", "optionalDependencies", "peerDependencies")
    return {name for kind in kinds if isinstance(data.get(kind), dict) for name in data[kind]}


def installed_version(package: Path) -> str:
    """The version in an installed package's package.json ('' when it cannot be read)."""
    try:
        version = json.loads(read_small(package / "package.json")).get("version", "")
    except (OSError, ValueError, AttributeError):
        return ""
    return version[:MAX_NAME] if isinstance(version, str) else ""


def _listing(directory: Path) -> list[str]:
    """The names in a directory, at most MAX_PACKAGE_ENTRIES of them; OSError when it cannot be listed."""
    with os.scandir(directory) as entries:
        return [entry.name for _, entry in zip(range(MAX_PACKAGE_ENTRIES), entries, strict=False)]


# -- configuration ------------------------------------------------------------------------------------------------


def config(profile: Profile, key: bytes) -> dict:
    """Which keys the .env file and the profile hold, each with a keyed hash of its value (never the value)."""
    flat = {}
    for name, value in profile.as_dict().items():
        for sub, v in value.items() if isinstance(value, dict) else [("", value)]:
            dotted = f"{name}.{sub}" if sub else name
            flat[dotted] = mac(key, "profile", dotted, json.dumps(v))
    return {"env_file": env_file(profile.env_file, key) if profile.env_file else None, "profile": flat}


def env_file(path: str, key: bytes) -> dict | str:
    """The keys of a .env file with keyed hashes of their values; MISSING, or unknown when it cannot be read."""
    try:
        read_small(path)  # a FIFO, a device or a huge file is refused here, before the parser opens it
        modified = os.stat(path).st_mtime
    except FileNotFoundError:
        return MISSING
    except OSError as exc:
        return unknown(f"cannot read {path}: {exc.strerror or exc}")
    values = read_env_file(path)
    keys = {name[:MAX_NAME]: mac(key, "env", name, value) for name, value in sorted(values.items())[:MAX_ENV_KEYS]}
    return {"path": path, "keys": keys, "changed": now_iso(modified)}


# -- database -----------------------------------------------------------------------------------------------------


def database(profile: Profile, row_budget: float) -> dict | str:
    """The database file (identity, size), its schema (hash, tables, user_version, journal mode, pages) and rows
    per table, each counted within what is left of ``row_budget`` seconds."""
    db = Database(profile)
    try:
        st = db.file()
        if st is None:
            return MISSING
        out = {
            "file": {
                "path": str(db.path),
                "inode": f"{st.st_dev}:{st.st_ino}",
                "size": st.st_size,
                "modified": now_iso(st.st_mtime),
                "replaced": now_iso(st.st_ctime),
            },
            "schema": None,
            "rows": {},
        }
        if not stat.S_ISREG(st.st_mode):
            out["schema"] = "not a regular file"
            return out
        try:
            header = db.header()
            if header != SQLITE_HEADER:
                out["schema"] = "empty file" if header == b"" else "not a SQLite database"
                return out
            out["schema"] = schema(db)
        except DatabaseUnavailable as exc:
            out["schema"] = unknown(str(exc))
            return out
        deadline = time.monotonic() + row_budget
        for table in out["schema"]["tables"]:
            left = deadline - time.monotonic()
            try:
                out["rows"][table] = db.timed_count(table, left)[0] if left > 0 else UNKNOWN
            except (BudgetExceeded, DatabaseUnavailable):
                out["rows"][table] = UNKNOWN
        return out
    finally:
        db.close()


def schema(db: Database) -> dict:
    """A hash of sqlite_master (every table, index, view and trigger as created), the tables, and three PRAGMAs."""
    rows = db.query("SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY type, name")
    tables = [name for kind, name, _, _ in rows if kind == "table" and not name.startswith("sqlite_")]
    return {
        "hash": hashlib.sha256(repr(rows).encode()).hexdigest()[:16],
        "tables": [name[:MAX_NAME] for name in tables[:MAX_TABLES]],
        "user_version": db.query("PRAGMA user_version")[0][0],
        "journal_mode": str(db.query("PRAGMA journal_mode")[0][0]).lower(),
        "pages": db.query("PRAGMA page_count")[0][0],
    }


# -- logs and host -----------------------------------------------------------------------------------------------


def logs(profile: Profile) -> dict | str:
    """Every log of [logs] all: size, when last written and the time of its last entry, newest first."""
    reader = Logs(profile)
    if not reader.root.is_dir():
        return MISSING
    os.scandir(reader.root).close()  # an unreadable log directory is unknown, not a directory without logs
    stamped = []
    for path in reader.files("all")[0]:
        try:
            stamped.append((path.stat(), path))
        except OSError:
            continue  # rotated away between the glob and the stat
    stamped.sort(key=lambda item: item[0].st_mtime, reverse=True)
    files = {}
    for st, path in stamped[:MAX_LOG_FILES]:
        files[str(path.relative_to(reader.root))] = {
            "size": st.st_size,
            "modified": now_iso(st.st_mtime),
            "last_entry": last_entry(path, reader.zone),
        }
    return {"dir": str(reader.root), "files": files, "complete": len(stamped) <= MAX_LOG_FILES}


def last_entry(path: Path, zone) -> str | None:
    """The time of the newest dated entry in the last LOG_TAIL bytes of a log (None: none found or unreadable)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise NotARegularFile(f"{path} is not a regular file")
        tail = os.pread(fd, LOG_TAIL, max(0, st.st_size - LOG_TAIL))
    except OSError:
        return None
    finally:
        os.close(fd)
    for line in reversed(tail.split(b"\n")[1:] if st.st_size > LOG_TAIL else tail.split(b"\n")):
        entry = parse_line(line, zone)
        if entry is not None and entry.timestamp is not None:
            return entry.timestamp.isoformat(timespec="seconds")
    return None


def host(profile: Profile) -> dict:
    """Free space of the disk the profile measures and of the database's filesystem, memory available, load."""
    disks = {}
    for name, path in (("disk_path", profile.disk_path), ("database", profile.db_path)):
        try:
            fs = filesystem_of(path)
        except OSError as exc:
            disks[name] = unknown(f"{path}: {exc.strerror or exc}")
            continue
        disks[name] = {"path": fs.path, "free": fs.free, "total": fs.total, "free_percent": round(fs.free_percent, 1)}
    memory = psutil.virtual_memory()
    return {
        "disks": disks,
        "memory_available_percent": round(100 * memory.available / memory.total, 1),
        "load1": round(os.getloadavg()[0], 2),
        "cpus": os.cpu_count() or 1,
    }
