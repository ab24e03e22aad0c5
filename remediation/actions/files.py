"""File actions: private modes for secret files, and credential archives readable by their owner only."""

from __future__ import annotations

import os
import stat
import tarfile
from pathlib import Path

from remediation.actions.core import Remediation, refuse_links, unique_path


def private_mode(mode: int, is_dir: bool) -> int:
    """Owner read/write (and search for directories) restored, group/other bits removed."""
    return (mode | (0o700 if is_dir else 0o600)) & ~0o077 & 0o7777


def fix_permissions(r: Remediation, paths: list[Path]) -> None:
    """Owner-only modes for ``paths``; refused as a whole when any of them is a symlink (never followed)."""
    refuse_links(r, paths)
    for path in paths:
        try:
            st = path.lstat()
        except OSError:
            r.observe(f"permissions of {path}", lambda: "missing")
            continue
        is_dir = stat.S_ISDIR(st.st_mode)
        mode, want = st.st_mode & 0o7777, private_mode(st.st_mode & 0o7777, is_dir)
        if mode == want:
            r.observe(f"permissions of {path}", lambda m=mode: f"{m:o} ok")
        else:
            r.step(f"chmod {want:o} {path} (was {mode:o})", lambda p=path, w=want: os.chmod(p, w))


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
