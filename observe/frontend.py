"""The frontend: the served page and the source tree's own tools, read-only on the target.

``npm ls``, ``tsc --noEmit`` and ``npm run build`` run in the profile's
frontend_dir with the profile's timeouts. They are read-only on the target:
the build writes to a temporary directory (``--outDir``), and tsc is the
project's own binary (``npx`` could download one).
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import tempfile
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urljoin, urlsplit

from observe.files import kind
from observe.http import MAX_BODY, Answer, Http
from observe.profile import Profile

SCRIPT_SRC = re.compile(r"""<script\b[^>]*\bsrc\s*=\s*["']([^"']+)["']""", re.IGNORECASE)
MAX_SCRIPTS = 10  # an app shell references a few bundles; a page listing hundreds is not read whole
OUTPUT_TAIL = 600  # characters of a failing command's output kept as evidence
# The session fixture that hands each tool's Run to a check.
TOOL_FIXTURES = {"npm_ls_run": "npm_ls", "tsc_run": "tsc", "build_run": "build"}


@dataclass
class Run:
    """A finished (or timed-out) command."""

    command: str
    returncode: int | None  # None: timed out or could not start
    output: str
    elapsed: float
    problem: str | None = None

    def evidence(self) -> str:
        head = self.problem or f"exit {self.returncode}"
        return f"`{self.command}` in {self.elapsed:.1f} s: {head}; output tail: {self.output[-OUTPUT_TAIL:].strip()!r}"


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


class Frontend:
    """The frontend of one target: its page over HTTP and its source tree on disk."""

    def __init__(self, profile: Profile):
        self.profile = profile
        self.dir = Path(profile.frontend_dir)
        self._page: Answer | None = None
        self._scripts: list[Answer] | None = None
        self._runs: dict[str, Future] = {}
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=len(TOOL_FIXTURES), thread_name_prefix="frontend-tool")

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
        return run([str(tsc), "--noEmit", "--incremental", "false"], self.dir, self.profile.timeouts.tsc)

    def _build(self) -> Run:
        if shutil.which("npm") is None:
            return Run("npm run build", None, "", 0.0, "npm is not on PATH")
        if problem := self._irregular("package.json"):
            return Run("npm run build", None, "", 0.0, problem)
        with tempfile.TemporaryDirectory(prefix="fossawork-build-") as out:
            # The build goes to a temporary directory so the check leaves the target's dist/ untouched.
            return run(
                ["npm", "run", "build", "--", "--outDir", out, "--emptyOutDir"], self.dir, self.profile.timeouts.build
            )
