"""Where the suite writes (the report directory) and how: every file it writes appears whole or not at all."""

from __future__ import annotations

import errno
import os
import secrets
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_REPORT_DIR = ROOT / "reports"
REPORT_DIR_ENV = "FOSSAWORK_REPORT_DIR"


def report_dir(option: str | os.PathLike | None = None) -> Path:
    """The report directory: the option's value, else $FOSSAWORK_REPORT_DIR, else reports/ of the checkout."""
    chosen = option or os.environ.get(REPORT_DIR_ENV)
    return Path(chosen) if chosen else DEFAULT_REPORT_DIR


def check_writable(directory: Path) -> None:
    """Raise the OSError that writing in ``directory`` would meet; the directory is created when missing.

    Asked before the first write of a run's reports, so that a directory the run's user cannot write is one
    error known in advance, not a failure half-way through writing them.
    """
    directory.mkdir(parents=True, exist_ok=True)
    if not os.access(directory, os.W_OK | os.X_OK):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(directory))


def write_atomically(path: Path, data: str | bytes, mode: int = 0o644) -> Path:
    """Write ``data`` to ``path`` through a temporary file in the same directory and ``os.replace``.

    Readers (a browser on latest.html, node_exporter on a .prom file, the next run on the alert state)
    never see half a file, and a crash leaves the previous version. The temporary name starts with a dot
    and does not keep the suffix, so globs such as ``*.prom`` or ``incident-*.json`` never match it.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    raw = data.encode("utf-8") if isinstance(data, str) else data
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(raw)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def create_once(path: Path, data: str, mode: int = 0o600) -> str:
    """The text of ``path``, which is created holding ``data`` when it does not exist yet, and never replaced.

    For a value every later run must agree on (the fingerprint key): it is written whole under a temporary name
    and linked into place, so two runs starting at once end up reading the same one, never half a file.
    """
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(data)
        os.link(tmp, path)
    except FileExistsError:
        pass  # another run created it first: its value is the one
    finally:
        tmp.unlink(missing_ok=True)
    return path.read_text(encoding="utf-8")


def evidence_dir(report_dir: Path, run_id: str) -> Path:
    """The incident's folder for evidence a fix is about to destroy (log lines before a restart or a rotation)."""
    return Path(report_dir) / f"incident-{run_id}.evidence"
