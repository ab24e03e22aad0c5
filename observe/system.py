"""CPU, memory and disk usage of the host, sampled once per run.

The runbook's ``psutil.cpu_percent(interval=1)`` sleeps a second in every
check. Here CPU is measured once, over the time from the session's start to
the first check that asks (at least MIN_SAMPLE seconds), and the CPU the
suite itself spent meanwhile (pytest, tsc, the build, the browser probe) is
taken out: a health check must not report its own load as the host's.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass

import psutil

from observe.files import nearest_existing

MIN_SAMPLE = 0.2
Mark = tuple[float, float, float]  # (monotonic, host busy CPU s, own CPU s)


@dataclass(frozen=True)
class Sample:
    cpu_percent: float  # of all cores, by every process but the suite's own
    cpu_window: float
    memory_percent: float
    memory_detail: str
    disk_percent: float | None
    disk_detail: str


def _busy_seconds() -> float:
    times = psutil.cpu_times()
    return sum(times) - times.idle - getattr(times, "iowait", 0.0)


def _own_seconds() -> float:
    """CPU seconds of this process, its live descendants, and its finished children (tsc, npm, browsers)."""
    me = psutil.Process()
    mine = me.cpu_times()
    total = mine.user + mine.system + mine.children_user + mine.children_system
    for child in me.children(recursive=True):
        try:
            times = child.cpu_times()
            total += times.user + times.system
        except psutil.Error:
            pass
    return total


def mark() -> Mark:
    """Where a CPU window starts: now, the host's busy CPU seconds and the suite's own."""
    return time.monotonic(), _busy_seconds(), _own_seconds()


def take_sample(disk_path: str, start: Mark | None = None) -> Sample:
    """CPU over the window since ``start`` (at least MIN_SAMPLE s, the suite's own use taken out), memory, disk."""
    start = start or mark()
    wait = MIN_SAMPLE - (time.monotonic() - start[0])
    if wait > 0:
        time.sleep(wait)
    now = mark()
    window = now[0] - start[0]
    others = (now[1] - start[1]) - (now[2] - start[2])
    cpu = min(100.0, max(0.0, 100.0 * others / (window * (psutil.cpu_count() or 1))))
    mem = psutil.virtual_memory()
    try:
        disk = shutil.disk_usage(disk_path)
        disk_percent = disk.used / disk.total * 100
        disk_detail = f"{disk_path}: {disk.used / 2**30:.1f} GiB used of {disk.total / 2**30:.1f} GiB"
    except OSError as exc:
        disk_percent, disk_detail = None, f"{disk_path}: {exc.strerror}"
    memory_detail = f"{(mem.total - mem.available) / 2**30:.1f} GiB in use of {mem.total / 2**30:.1f} GiB"
    return Sample(cpu, window, mem.percent, memory_detail, disk_percent, disk_detail)


@dataclass(frozen=True)
class Filesystem:
    """Space on the filesystem holding ``path`` (as an unprivileged writer sees it: root's reserve excluded)."""

    path: str
    free: int
    total: int

    @property
    def free_percent(self) -> float:
        return 100 * self.free / self.total if self.total else 0.0

    def describe(self) -> str:
        return (
            f"{self.path}: {self.free / 2**20:.1f} MiB free of {self.total / 2**20:.1f} MiB "
            f"({self.free_percent:.1f}% free)"
        )


def filesystem_of(path: str | os.PathLike) -> Filesystem:
    """The filesystem holding ``path``, or its nearest existing parent (a missing database still has a disk)."""
    here = nearest_existing(path)
    st = os.statvfs(here)
    return Filesystem(str(here), st.f_bavail * st.f_frsize, st.f_blocks * st.f_frsize)
