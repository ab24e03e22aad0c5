"""The frontend: the served page and the source tree's own tools, read-only on the target.

``npm ls``, ``tsc --noEmit`` and ``npm run build`` run in the profile's
frontend_dir with the profile's timeouts. They are read-only on the target:
the build writes to a temporary directory (``--outDir``), and tsc is the
project's own binary (``npx`` could download one).

On a real-size frontend the type-check and the build take most of a full run,
so their results can be kept in a cache directory of the suite's (never in the
target): :class:`ToolCache`. A result is reused only while the key of the tree
(:func:`tree_key`: every file's path, size, times and inode, node_modules' top
level, the tools' versions, node, npm and the environment they read) is the
one it was stored under; tsc keeps its ``--incremental`` state there too, so a
changed source costs an incremental check, not a full one.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import stat
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urljoin, urlsplit

from observe.files import kind, read_small
from observe.http import MAX_BODY, Answer, Http
from observe.profile import Profile

SCRIPT_SRC = re.compile(r"""<script\b[^>]*\bsrc\s*=\s*["']([^"']+)["']""", re.IGNORECASE)
MAX_SCRIPTS = 10  # an app shell references a few bundles; a page listing hundreds is not read whole
OUTPUT_TAIL = 600  # characters of a failing command's output kept as evidence
# The session fixture that hands each tool's Run to a check.
TOOL_FIXTURES = {"npm_ls_run": "npm_ls", "tsc_run": "tsc", "build_run": "build"}

CACHE_FORMAT = 1  # part of every key: entries written by another layout of the cache never match
MAX_SOURCES = 20_000  # entries keyed at most; a bigger tree is not cached and its tools run every time
# A file changed this recently may change again inside the same timestamp tick (same size, same times): a result
# is stored only when the tree has been still for this long, so a key never stands for two contents.
SETTLE_SECONDS = 1.0
# Not sources: installed packages (their top level is keyed apart) and version control, which no tool reads.
NOT_SOURCES = frozenset({"node_modules", ".git"})
# The tools whose versions a result depends on (node_modules/<name>/package.json).
TOOL_PACKAGES = ("typescript", "vite")
# Environment the tools read: Vite bakes VITE_* into the bundle, NODE_* and npm_config_* change how they run.
TOOL_ENV_PREFIXES = ("VITE_", "NODE_", "npm_config_")
CACHED_TREES = 8  # trees whose cache is kept (the most recently stored); each sandbox or test tree adds one


@dataclass
class Run:
    """A finished (or timed-out) command."""

    command: str
    returncode: int | None  # None: timed out or could not start
    output: str
    elapsed: float
    problem: str | None = None
    reused: str | None = None  # when reused from the cache: when that run finished (UTC, ISO 8601)

    def evidence(self) -> str:
        head = self.problem or f"exit {self.returncode}"
        when = f" (the result of {self.reused}, reused: sources and tools unchanged since)" if self.reused else ""
        return (
            f"`{self.command}` in {self.elapsed:.1f} s{when}: {head}; "
            f"output tail: {self.output[-OUTPUT_TAIL:].strip()!r}"
        )


def run(command: list[str], cwd: Path, timeout: float) -> Run:
    """Run a command without a shell, bounded by ``timeout``; never raises."""
    shown = " ".join(command)
    start = time.monotonic()
    if not cwd.is_dir():
        return Run(shown, None, "", 0.0, f"directory {cwd} does not exist")
    env = {**os.environ, "CI": "1", "NO_COLOR": "1", "npm_config_update_notifier": "false"}
    try:
        proc = subprocess.run(
            command,
            cwd=cwd,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=timeout,
            env=env,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired as exc:
        output = (exc.stdout or "") + (exc.stderr or "") if isinstance(exc.stdout, str) else ""
        return Run(shown, None, output, time.monotonic() - start, f"timed out after {timeout:g} s")
    except OSError as exc:
        return Run(shown, None, "", time.monotonic() - start, f"cannot start: {exc.strerror}")
    return Run(shown, proc.returncode, proc.stdout + proc.stderr, time.monotonic() - start)


@dataclass(frozen=True)
class TreeKey:
    """The key of a frontend tree's sources and tools."""

    key: str | None  # None: the tree cannot be keyed cheaply and safely, and nothing of it is cached
    settled: bool  # nothing in it changed in the last SETTLE_SECONDS: a result may be stored under the key


def tree_key(root: Path) -> TreeKey:
    """The key of what the type-check and the build read, from metadata only (no file is read but two versions).

    Every entry of the tree but NOT_SOURCES: path, type, size, mtime, ctime and inode (ctime and inode change with
    any write or replacement, even one that restores an old mtime); node_modules' top level and its lock file
    (an install replaces them); the versions of TOOL_PACKAGES; the node and npm found on PATH; and the environment
    the tools read. Symlinks are recorded and never walked: a linked file counts with its target's metadata, a
    linked directory inside the tree is keyed where it lives, and one outside makes the tree uncacheable.
    """
    digest = hashlib.sha256(repr(("frontend-sources", CACHE_FORMAT)).encode())
    real_root = os.path.realpath(root)
    newest = 0
    count = 0

    def add(*parts) -> None:
        digest.update(repr(parts).encode("utf-8", "backslashreplace") + b"\0")

    def note(st: os.stat_result, ctime: bool = True) -> None:
        nonlocal newest
        changed = st.st_ctime_ns if ctime else 0
        newest = max(newest, st.st_mtime_ns, changed)
        add(stat.S_IFMT(st.st_mode), st.st_size, st.st_mtime_ns, changed, st.st_ino)

    pending = [str(root)]
    while pending:
        folder = pending.pop()
        try:
            with os.scandir(folder) as listing:
                entries = sorted(listing, key=lambda e: e.name)
        except OSError:
            return TreeKey(None, False)
        count += len(entries)
        if count > MAX_SOURCES:
            return TreeKey(None, False)
        for entry in entries:
            if entry.name in NOT_SOURCES:
                continue
            rel = os.path.relpath(entry.path, root)
            try:
                st = entry.stat(follow_symlinks=False)
                if stat.S_ISLNK(st.st_mode):
                    add(rel, "link", os.readlink(entry.path))
                    target = os.path.realpath(entry.path)
                    if os.path.isdir(target):
                        if os.path.commonpath([target, real_root]) != real_root:
                            return TreeKey(None, False)
                        continue  # keyed where it lives, inside the tree
                    st = os.stat(entry.path)
            except OSError:
                add(rel, "unreadable")  # vanished or dangling: the tools will not read it either
                continue
            if stat.S_ISDIR(st.st_mode):
                add(rel, "dir")
                pending.append(entry.path)
            else:
                add(rel)
                note(st)

    modules = Path(root) / "node_modules"
    try:
        # Packages and npm's record of the install; not the tools' own caches (.vite, .vite-temp, .cache), which
        # every dev-server start and build rewrites.
        top = [e for e in os.scandir(modules) if not e.name.startswith(".") or e.name == ".package-lock.json"]
        top.sort(key=lambda e: e.name)
        scoped = [e for e in top if e.name.startswith("@") and e.is_dir()]
        top += [s for scope in scoped for s in sorted(os.scandir(scope.path), key=lambda e: e.name)]
    except OSError as exc:
        add("node_modules", exc.errno)
        top = []
    if len(top) + count > MAX_SOURCES:
        return TreeKey(None, False)
    for entry in top:
        try:
            add(os.path.relpath(entry.path, root))
            # Without ctime: node_modules is often hard-linked (the sandbox's is), and every link made or removed
            # anywhere changes a file's ctime. An install replaces what it changes (new inode, mtime or size).
            note(entry.stat(follow_symlinks=False), ctime=False)
        except OSError:
            add(entry.name, "unreadable")
    for package in TOOL_PACKAGES:
        try:
            add(package, read_small(modules / package / "package.json"))
        except OSError as exc:
            add(package, exc.errno)
    for program in ("node", "npm"):
        found = shutil.which(program)
        try:
            st = os.stat(found) if found else None
            add(program, found, st and (st.st_ino, st.st_size, st.st_mtime_ns))
        except OSError:
            add(program, found, "unreadable")
    add(sorted((k, v) for k, v in os.environ.items() if k.startswith(TOOL_ENV_PREFIXES)))
    settled = newest < (time.time() - SETTLE_SECONDS) * 1e9
    return TreeKey(digest.hexdigest(), settled)


class ToolCache:
    """The tools' results and tsc's incremental state for one frontend tree, in a directory of the suite's.

    An entry is used only under the key it was stored with, and only once the type-check's own record shows
    that the program reads nothing outside the tree and its packages (the key covers no more than that); one
    that cannot be read is a miss, never an error. Every write is a whole file renamed into place, so runs at
    the same time never read half an entry, and a cache that cannot be written costs the next run time, never
    a verdict.
    """

    def __init__(self, directory: Path, tree: Path):
        # Absolute: tsc resolves a relative --tsBuildInfoFile against the tree, where nothing may be written.
        self.root = Path(directory).absolute()
        self.tree = os.path.realpath(tree)
        self.dir = self.root / hashlib.sha256(self.tree.encode()).hexdigest()[:16]

    def make(self) -> None:
        """Create the folders, the owner's only: tsc's messages quote the literals they reject, a secret included."""
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.dir.mkdir(mode=0o700, exist_ok=True)

    def load(self, tool: str, key: str) -> Run | None:
        """The stored Run of ``tool`` under ``key``, or None."""
        try:
            entry = json.loads(read_small(self.dir / f"{tool}.json", 16 << 20))
            if entry["key"] != key or self.reads_outside():
                return None
            return Run(**{**entry["run"], "reused": entry["finished"]})
        except (OSError, ValueError, TypeError, KeyError):
            return None

    def reads_outside(self) -> bool:
        """Whether the last type-check's program had sources outside the tree and its packages (a monorepo's
        shared code, a tsconfig extending one elsewhere), or there was none yet: then the key says too little.

        tsc's build-info file lists every file of the program, relative to its own folder (a sibling of this
        one): the tree's sources start with the tree's relative path, packages have a node_modules folder.
        """
        inside = os.path.relpath(self.tree, self.dir) + os.sep
        try:
            names = json.loads(read_small(self.dir / "tsc.tsbuildinfo", 64 << 20))["fileNames"]
            return not all(name.startswith(inside) or "/node_modules/" in name for name in names)
        except (OSError, ValueError, TypeError, KeyError, AttributeError):
            return True

    def store(self, tool: str, key: str, result: Run) -> None:
        """Keep ``result`` of ``tool`` under ``key`` (best effort)."""
        finished = datetime.now(UTC).isoformat(timespec="seconds")
        entry = {"key": key, "finished": finished, "run": {**asdict(result), "reused": None}}
        try:
            self.make()
            fd, temporary = tempfile.mkstemp(dir=self.dir, prefix=f".{tool}-")
        except OSError:
            return
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(entry, handle)
            os.replace(temporary, self.dir / f"{tool}.json")
        except OSError:
            Path(temporary).unlink(missing_ok=True)
        self._prune()

    def _prune(self) -> None:
        """Keep the CACHED_TREES trees stored last; drop work folders a killed run left (a day old)."""
        try:
            folders = sorted(
                (entry.stat().st_mtime, entry.path, entry.name.startswith("."))
                for entry in os.scandir(self.root)
                if entry.is_dir(follow_symlinks=False)
            )
        except OSError:
            return
        trees = [path for _, path, work in folders if not work]
        stale = [path for mtime, path, work in folders if work and mtime < time.time() - 86400]
        for path in trees[:-CACHED_TREES] + stale:
            shutil.rmtree(path, ignore_errors=True)

    def type_check(self, tsc: Path, cwd: Path, timeout: float) -> Run:
        """``tsc --noEmit --incremental`` with its build-info file kept here, not in the tree.

        tsc writes the file where it is told, and records paths relative to it and its own name: each run works
        on a copy in a fresh sibling folder of the same name (two runs at once never write one file), and the
        copy replaces the kept one when tsc finishes. tsc trusts the file: a damaged one can make it crash
        (exit 1, no diagnostic), and then the check runs again without it, inside the same timeout.
        """
        deadline = time.monotonic() + timeout
        kept = self.dir / "tsc.tsbuildinfo"
        shown = f"{tsc} --noEmit --incremental --tsBuildInfoFile {kept}"
        try:
            self.make()
            work = Path(tempfile.mkdtemp(dir=self.root, prefix=f".{self.dir.name}-"))
        except OSError:
            return run([str(tsc), "--noEmit", "--incremental", "false"], cwd, timeout)
        try:
            info = work / kept.name
            try:
                shutil.copyfile(kept, info)
                warm = True
            except OSError:
                warm = False
            command = [str(tsc), "--noEmit", "--incremental", "--tsBuildInfoFile", str(info)]
            result = run(command, cwd, timeout)
            if warm and result.returncode not in (0, None) and "error TS" not in result.output:
                info.unlink(missing_ok=True)
                result = run(command, cwd, max(deadline - time.monotonic(), 0.0))
            if result.returncode is not None and info.exists():
                os.replace(info, kept)
            return replace(result, command=shown)
        finally:
            shutil.rmtree(work, ignore_errors=True)


class Frontend:
    """The frontend of one target: its page over HTTP and its source tree on disk."""

    def __init__(self, profile: Profile, cache_dir: Path | None = None):
        """``cache_dir``: where the type-check and build results are kept (see :class:`ToolCache`); None: nowhere."""
        self.profile = profile
        self.dir = Path(profile.frontend_dir)
        self._page: Answer | None = None
        self._scripts: list[Answer] | None = None
        self._runs: dict[str, Future] = {}
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=len(TOOL_FIXTURES), thread_name_prefix="frontend-tool")
        self._cache = ToolCache(cache_dir, self.dir) if cache_dir is not None else None
        self._tree_key: TreeKey | None = None

    def start(self, *tools: str) -> None:
        """Start these tools ('npm_ls', 'tsc', 'build') in the background; each runs at most once."""
        with self._lock:
            for tool in tools:
                if tool not in self._runs:
                    self._runs[tool] = self._pool.submit(getattr(self, f"_{tool}"))

    def _result(self, tool: str) -> Run:
        self.start(tool)
        return self._runs[tool].result()

    def close(self) -> None:
        """Wait for tools still running (each is bounded by its timeout), so none outlives the run."""
        self._pool.shutdown(wait=True, cancel_futures=True)

    def page(self) -> Answer:
        """GET of the frontend URL, once per run, within the frontend timeout."""
        if self._page is None:
            http = Http(self.profile.timeouts.connect, self.profile.timeouts.frontend, self.profile.verify_tls)
            try:
                self._page = http.request("GET", self.profile.frontend_url)
            finally:
                http.close()
        return self._page

    def scripts(self) -> list[Answer]:
        """The page's scripts as served (``<script src>``, same origin, at most MAX_SCRIPTS), once per run."""
        if self._scripts is None:
            page = self.page()
            sources = SCRIPT_SRC.findall(page.body[:MAX_BODY].decode("utf-8", errors="replace")) if page.ok else []
            origin = urlsplit(self.profile.frontend_url)
            urls = [urljoin(self.profile.frontend_url, src) for src in sources]
            urls = [u for u in urls if urlsplit(u).netloc == origin.netloc][:MAX_SCRIPTS]
            http = Http(self.profile.timeouts.connect, self.profile.timeouts.frontend, self.profile.verify_tls)
            try:
                self._scripts = [http.request("GET", url) for url in urls]
            finally:
                http.close()
        return self._scripts

    def has_node_modules(self) -> bool:
        """Whether the source tree has its node_modules directory (installed dependencies)."""
        return (self.dir / "node_modules").is_dir()

    def npm_ls(self) -> Run:
        """`npm ls --depth=0`, once per run."""
        return self._result("npm_ls")

    def tsc(self) -> Run:
        """The project's `tsc --noEmit`, once per run."""
        return self._result("tsc")

    def build(self) -> Run:
        """`npm run build` into a temporary directory, once per run."""
        return self._result("build")

    def _irregular(self, name: str) -> str | None:
        """Why the tree's ``name``, which a tool reads first, is no file to read: a FIFO there would hold the tool
        until its timeout, a device would feed it forever. None when it is a regular file or missing (the tool
        reports a missing one itself)."""
        try:
            mode = (self.dir / name).stat().st_mode
        except OSError:
            return None
        return None if stat.S_ISREG(mode) else f"{self.dir / name} is a {kind(mode)}, not a regular file"

    def _npm_ls(self) -> Run:
        if problem := self._irregular("package.json"):
            return Run("npm ls --depth=0", None, "", 0.0, problem)
        return run(["npm", "ls", "--depth=0"], self.dir, self.profile.timeouts.npm_ls)

    def _tsc(self) -> Run:
        tsc = self.dir / "node_modules" / ".bin" / "tsc"
        if not tsc.exists():
            return Run(f"{tsc} --noEmit", None, "", 0.0, f"TypeScript is not installed ({tsc} missing)")
        if problem := self._irregular("tsconfig.json"):
            return Run(f"{tsc} --noEmit", None, "", 0.0, problem)
        if self._cache is None:
            return run([str(tsc), "--noEmit", "--incremental", "false"], self.dir, self.profile.timeouts.tsc)
        return self._cached("tsc", lambda: self._cache.type_check(tsc, self.dir, self.profile.timeouts.tsc))

    def _build(self) -> Run:
        if shutil.which("npm") is None:
            return Run("npm run build", None, "", 0.0, "npm is not on PATH")
        if problem := self._irregular("package.json"):
            return Run("npm run build", None, "", 0.0, problem)
        return self._cached("build", self._build_into_temporary_directory)

    def _build_into_temporary_directory(self) -> Run:
        with tempfile.TemporaryDirectory(prefix="fossawork-build-") as out:
            # The build goes to a temporary directory so the check leaves the target's dist/ untouched.
            return run(
                ["npm", "run", "build", "--", "--outDir", out, "--emptyOutDir"], self.dir, self.profile.timeouts.build
            )

    def _cached(self, tool: str, work: Callable[[], Run]) -> Run:
        """The result of ``work`` for ``tool``: the cached one while the tree's key is the one it was stored under.

        The key is taken before the tool runs (once per run, for both tools), so what the tool read is at least
        as new as the key: a change during the run gives the next run another key, never this result. Only
        finished runs are kept: a timeout says something about that moment's load, not about the sources.
        """
        if self._cache is None:
            return work()
        with self._lock:
            if self._tree_key is None:
                self._tree_key = tree_key(self.dir)
        if self._tree_key.key is None:
            return work()
        key = hashlib.sha256(f"{self._tree_key.key} {tool}".encode()).hexdigest()
        found = self._cache.load(tool, key)
        if found is not None:
            return found
        result = work()
        if result.returncode is not None and self._tree_key.settled:
            self._cache.store(tool, key, result)
        return result
