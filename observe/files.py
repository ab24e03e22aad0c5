"""Files of the target: bounded reads that never block, and the files holding secrets.

Any path a profile names can be a FIFO, a device, a socket or a huge file. Every read of a
target's file goes through :func:`open_regular`: it opens without blocking (``O_NONBLOCK``),
refuses anything but a regular file, and so no observation waits on a writer that never comes.
``read_small`` reads a whole small file that way, ``read_head`` the start of a big one.

This module is the bottom of ``observe/``: it imports no other observe module at run time, so
the profile (its env_file), the database and the logs can all read through it.
"""

from __future__ import annotations

import os
import pwd
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

SMALL_FILE_LIMIT = 1 << 20


class SecretPaths(Protocol):
    """Where a profile (observe.profile.Profile) keeps secrets; named structurally, since the profile module
    reads its env_file through this one."""

    db_path: str
    env_file: str
    credentials_dir: str


class NotARegularFile(OSError):
    """The path is a FIFO, device, socket or directory: reading it could block or mean nothing."""


def why(exc: OSError) -> str:
    """One line naming the path and the cause of an OSError ('/x/.env: Permission denied')."""
    if exc.strerror and exc.filename is not None:
        return f"{exc.filename}: {exc.strerror}"
    return str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__


def kind(mode: int) -> str:
    """'FIFO', 'socket', 'directory', ... for a stat mode (what a one-line error names)."""
    for test, name in (
        (stat.S_ISFIFO, "FIFO"),
        (stat.S_ISSOCK, "socket"),
        (stat.S_ISCHR, "character device"),
        (stat.S_ISBLK, "block device"),
        (stat.S_ISDIR, "directory"),
    ):
        if test(mode):
            return name
    return "regular file"


def open_regular(path: str | os.PathLike) -> int:
    """A read-only descriptor of the regular file at ``path``; NotARegularFile or OSError otherwise, never a wait.

    The path is looked at before it is opened, so a socket is named as one (opening it fails with "No such
    device"); the descriptor is checked again, so a FIFO put in its place meanwhile is refused too. O_NONBLOCK
    makes opening a FIFO return at once, O_NOCTTY keeps a terminal from becoming this process's own.
    """
    mode = os.stat(path).st_mode
    if not stat.S_ISREG(mode):
        raise NotARegularFile(f"{path} is a {kind(mode)}, not a regular file")
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise NotARegularFile(f"{path} is a {kind(mode)}, not a regular file")
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_small(path: str | os.PathLike, limit: int = SMALL_FILE_LIMIT) -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes; OSError (one line) otherwise, never a wait."""
    fd = open_regular(path)
    try:
        size = os.fstat(fd).st_size
        if size > limit:
            raise OSError(f"{path} is {size} bytes, more than the {limit} this reads")
        return os.read(fd, limit + 1)[:limit]
    finally:
        os.close(fd)


def read_head(path: str | os.PathLike, size: int) -> bytes:
    """The first ``size`` bytes of a regular file of any length (fewer if it is shorter); never a wait."""
    fd = open_regular(path)
    try:
        return os.read(fd, size)
    finally:
        os.close(fd)


def read_tail(path: str | os.PathLike, limit: int) -> tuple[bytes, os.stat_result]:
    """The last ``limit`` bytes of a regular file and its stat; OSError (one line) otherwise, never a wait."""
    fd = open_regular(path)
    try:
        st = os.fstat(fd)
        return os.pread(fd, limit, max(0, st.st_size - limit)), st
    finally:
        os.close(fd)


def sidecars(path: str | os.PathLike) -> list[Path]:
    """A SQLite database file and the -wal, -shm and -journal files that belong with it (existing or not)."""
    db = Path(path)
    return [db, *(db.with_name(db.name + suffix) for suffix in ("-wal", "-shm", "-journal"))]


@dataclass(frozen=True)
class Mode:
    """A file's permission evidence: path, mode bits, owner."""

    path: Path
    mode: int
    uid: int
    gid: int
    is_dir: bool

    @property
    def exposed(self) -> bool:
        """Readable or writable by group or others."""
        return bool(self.mode & 0o066)

    def describe(self) -> str:
        return f"{self.path} ({stat.filemode(self.mode)})"


def mode_of(path: Path) -> Mode | None:
    """The mode of ``path`` (of what a symlink points at: that is what readers get), or None when missing."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return Mode(path, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, stat.S_ISDIR(st.st_mode))


def secret_files(profile: SecretPaths) -> list[Path]:
    """Where secrets live: the database and its sidecars, the .env file, the credentials directory and its tree.

    One list for the check that finds exposed secrets and the fix that makes them private.
    """
    db = Path(profile.db_path)
    paths = [p for p in sidecars(db) if p == db or os.path.lexists(p)]
    if profile.env_file:
        paths.append(Path(profile.env_file))
    if profile.credentials_dir:
        creds = Path(profile.credentials_dir)
        paths.append(creds)
        if creds.is_dir() and not creds.is_symlink():
            # rglob lists symlinks but does not descend into linked directories: a fix must see the links to
            # refuse them, and nothing outside the store is walked.
            paths += sorted(creds.rglob("*"))
    return paths


def existing_secret_files(profile: SecretPaths) -> list[Path]:
    """The secret files that are there to look at (a dangling symlink counts: it is an entry of the target)."""
    return [path for path in secret_files(profile) if os.path.lexists(path)]


def exposed_secret_files(profile: SecretPaths) -> list[Mode]:
    """The secret files readable or writable by group or others."""
    return [m for m in map(mode_of, secret_files(profile)) if m is not None and m.exposed]


@dataclass(frozen=True)
class CredentialStore:
    """The credentials directory as its owner sees it: its mode and its files (name, size, mode; never contents)."""

    path: Path
    mode: int | None  # None when missing or not a directory
    files: tuple[tuple[str, int, int], ...]  # (name, size, mode)

    @property
    def usable(self) -> bool:
        """A directory its owner can read, write and search, holding at least one credential file."""
        return self.mode is not None and self.mode & 0o700 == 0o700 and bool(self.files)

    def describe(self) -> str:
        if self.mode is None:
            return f"{self.path}: missing"
        return f"{self.path}: mode {stat.filemode(stat.S_IFDIR | self.mode)}, {len(self.files)} credential files"


def credential_store(path: str | os.PathLike) -> CredentialStore:
    """Look at the credentials directory without reading any file in it."""
    store = Path(path)
    try:
        st = os.stat(store)
    except OSError:
        return CredentialStore(store, None, ())
    if not stat.S_ISDIR(st.st_mode):
        return CredentialStore(store, None, ())
    files = []
    if st.st_mode & stat.S_IRUSR:
        try:
            for entry in os.scandir(store):
                if entry.is_file(follow_symlinks=False):
                    info = entry.stat(follow_symlinks=False)
                    files.append((entry.name, info.st_size, stat.S_IMODE(info.st_mode)))
        except OSError:
            pass  # unreadable for us: reported as no files
    return CredentialStore(store, stat.S_IMODE(st.st_mode), tuple(sorted(files)))


def largest_files(roots: list[Path], n: int = 10, budget: int = 100_000) -> list[tuple[Path, int]]:
    """The ``n`` largest regular files under ``roots`` (symlinks not followed, at most ``budget`` entries read)."""
    found: list[tuple[int, Path]] = []
    stack, seen = [Path(root) for root in roots], 0
    while stack and seen < budget:
        try:
            entries = list(os.scandir(stack.pop()))
        except OSError:
            continue
        for entry in entries:
            seen += 1
            try:
                if entry.is_dir(follow_symlinks=False):
                    stack.append(Path(entry.path))
                elif entry.is_file(follow_symlinks=False):
                    found.append((entry.stat(follow_symlinks=False).st_size, Path(entry.path)))
            except OSError:
                continue
    return [(path, size) for size, path in sorted(found, reverse=True)[:n]]


def same_filesystem(path: str | os.PathLike, other: str | os.PathLike) -> bool:
    """Whether two existing paths live on one filesystem (freeing space in one frees it for the other)."""
    try:
        return os.stat(path).st_dev == os.stat(other).st_dev
    except OSError:
        return False


def nearest_existing(path: str | os.PathLike) -> Path:
    """``path`` itself, or its nearest ancestor that exists (a missing database still has a directory)."""
    here = Path(path)
    while not os.path.lexists(here) and here != here.parent:
        here = here.parent
    return here


def flock_holders(path: str | os.PathLike) -> list[int]:
    """Pids holding a flock on ``path`` (from /proc/locks; empty when it cannot be read)."""
    try:
        st = os.stat(path)
        text = read_small("/proc/locks", 4 << 20).decode("ascii", "replace")
    except OSError:
        return []
    want = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    pids = []
    for line in text.splitlines():
        fields = line.split()
        # "1: FLOCK  ADVISORY  WRITE 1234 08:01:5678 0 EOF" (blocked waiters carry "->" and are skipped)
        if len(fields) >= 6 and fields[1] == "FLOCK" and fields[5] == want and fields[4].isdigit():
            pids.append(int(fields[4]))
    return pids


@dataclass(frozen=True)
class Account:
    """A user as the kernel checks file access for it: uid, primary and supplementary groups."""

    name: str
    uid: int
    gids: frozenset[int]

    def can_write(self, path: Path) -> bool:
        """Whether this user may write ``path`` (and, for a directory, create entries in it), by its mode bits."""
        try:
            st = os.stat(path)
        except OSError:
            return False
        if self.uid == 0:
            return True
        need = 0o3 if stat.S_ISDIR(st.st_mode) else 0o2  # a directory also needs search to create entries
        if st.st_uid == self.uid:
            bits = st.st_mode >> 6
        elif st.st_gid in self.gids:
            bits = st.st_mode >> 3
        else:
            bits = st.st_mode
        return bits & need == need


def account(name_or_uid: str | int) -> Account | None:
    """The account of a user name or uid (None when this host has no such user)."""
    try:
        entry = pwd.getpwuid(name_or_uid) if isinstance(name_or_uid, int) else pwd.getpwnam(name_or_uid)
    except KeyError:
        return None
    return Account(entry.pw_name, entry.pw_uid, frozenset(os.getgrouplist(entry.pw_name, entry.pw_gid)))
