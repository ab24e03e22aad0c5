"""One psutil snapshot of the host's processes per run.

Processes are matched by a command-line substring and, when the profile gives
one, their working directory, so two deployments (or sandboxes) on one host
are told apart. Only top-level matches count: a matching child of a matching
process (``sh -c vite`` -> ``node vite``, uvicorn's reloader) is the same service.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import psutil

MIN_SAMPLE = 0.2  # seconds: shorter CPU samples are noise


@dataclass(frozen=True)
class Proc:
    pid: int
    ppid: int
    name: str
    cmdline: str
    cwd: str

    def describe(self) -> str:
        return f"pid {self.pid} ({self.cmdline[:80] or self.name})"


def command_line(pid: int) -> str:
    """The command line of one process ('' when it is gone or may not be read)."""
    try:
        return " ".join(psutil.Process(pid).cmdline())
    except psutil.Error:
        return ""


class ProcessesUnavailable(Exception):
    """The process table cannot be read (e.g. /proc hidden or denied); str() is one line."""


class Processes:
    """A snapshot of the process table, taken when first needed, plus per-process CPU samples."""

    def __init__(self):
        self.taken = time.monotonic()
        self.procs: dict[int, Proc] = {}
        self._handles: dict[int, psutil.Process] = {}
        try:
            self._snapshot()
        except psutil.Error as exc:
            raise ProcessesUnavailable(f"cannot list processes: {exc}") from None

    def _snapshot(self) -> None:
        for handle in psutil.process_iter(["pid", "ppid", "name", "cmdline", "cwd", "status"]):
            info = handle.info
            if info.get("status") == psutil.STATUS_ZOMBIE:
                continue  # exited, waiting to be reaped: not a running service or browser
            cmdline = " ".join(info.get("cmdline") or [])
            self.procs[info["pid"]] = Proc(
                info["pid"], info.get("ppid") or 0, info.get("name") or "", cmdline, info.get("cwd") or ""
            )
            self._handles[info["pid"]] = handle
            try:
                handle.cpu_percent(None)  # primes the per-process CPU sample, read later by cpu_percent()
            except psutil.Error:
                pass

    def matching(self, pattern: str, cwd: str = "") -> list[Proc]:
        """Top-level processes whose command line contains ``pattern`` (and whose cwd is ``cwd`` if given)."""
        found = {
            p.pid: p
            for p in self.procs.values()
            if pattern and (pattern in p.cmdline or pattern in p.name) and (not cwd or _same(p.cwd, cwd))
        }
        return [p for p in found.values() if p.ppid not in found]

    def instances(self, pattern: str) -> list[Proc]:
        """Top-level processes whose name contains ``pattern`` (a browser, not its zygote and renderers),
        not counting the suite's own (its browser probe)."""
        own = self.descendants(os.getpid())
        found = {p.pid: p for p in self.procs.values() if pattern in p.name and p.pid not in own}
        return [p for p in found.values() if p.ppid not in found]

    def descendants(self, pid: int) -> set[int]:
        children: dict[int, list[int]] = {}
        for p in self.procs.values():
            children.setdefault(p.ppid, []).append(p.pid)
        out, stack = set(), [pid]
        while stack:
            for child in children.get(stack.pop(), []):
                if child not in out:
                    out.add(child)
                    stack.append(child)
        return out

    def servers(self, pattern: str, directory: str, port: int | None) -> list[Proc]:
        """Top-level processes matching ``pattern`` that serve: they (or a child) listen on a TCP port, and run
        in ``directory`` (or below it) or listen on ``port``. A ``vite build`` or another project's server is none.
        """
        listening = self.listening_ports()
        found = []
        for proc in self.matching(pattern):
            family = {proc.pid, *self.descendants(proc.pid)}
            ports = {p for pid in family for p in listening.get(pid, ())}
            inside = bool(directory) and _within(proc.cwd, directory)
            if ports and (inside or port in ports):
                found.append(proc)
        return found

    def listening_ports(self) -> dict[int, set[int]]:
        """pid -> the TCP ports it listens on (sockets whose owner cannot be seen are left out)."""
        out: dict[int, set[int]] = {}
        try:
            conns = psutil.net_connections(kind="tcp")
        except psutil.Error:
            return out
        for conn in conns:
            if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.pid:
                out.setdefault(conn.pid, set()).add(conn.laddr.port)
        return out

    def listener(self, port: int, likely: Iterable[int] = ()) -> int | None:
        """Pid of the process listening on TCP ``port`` (None if nobody, 0 if the owner cannot be seen).

        The ``likely`` processes are asked first: finding the owner of any socket means reading the open files of
        every process on the host (~8 ms here, more on a busy one), and the expected owner usually holds it.
        """
        for pid in likely:
            try:
                conns = psutil.Process(pid).net_connections(kind="tcp")
            except psutil.Error:
                continue
            if any(c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port for c in conns):
                return pid
        try:
            conns = psutil.net_connections(kind="tcp")
        except psutil.Error:
            return 0
        for conn in conns:
            if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port:
                return conn.pid or 0
        return None

    def cpu_percent(self, pid: int) -> float | None:
        """CPU % of one process since the snapshot (sampled once, at least MIN_SAMPLE long)."""
        handle = self._handles.get(pid)
        if handle is None:
            return None
        wait = MIN_SAMPLE - (time.monotonic() - self.taken)
        if wait > 0:
            time.sleep(wait)
        try:
            return handle.cpu_percent(None)
        except psutil.Error:
            return None

    def memory_percent(self, pid: int) -> float | None:
        handle = self._handles.get(pid)
        try:
            return None if handle is None else handle.memory_percent()
        except psutil.Error:
            return None


def _within(path: str, directory: str) -> bool:
    try:
        return Path(os.path.realpath(path)).is_relative_to(os.path.realpath(directory))
    except OSError:
        return False


def _same(a: str, b: str) -> bool:
    try:
        return os.path.realpath(a) == os.path.realpath(b)
    except OSError:
        return False


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
