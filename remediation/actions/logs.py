"""Log actions: rotate and gzip instead of truncating, every byte verified before the plain copy goes."""

from __future__ import annotations

import gzip
import hashlib
import os
from pathlib import Path

from observe.files import largest_files, same_filesystem
from observe.logs import Logs
from observe.services import holders
from observe.system import filesystem_of
from remediation.actions.core import Remediation, StepFailed, stamp, unique_path


def rotate_logs(r: Remediation) -> None:
    """Rename each oversized log with a timestamp and gzip it; the runbook's truncate would lose lines."""
    limit = r.profile.thresholds.log_max_bytes
    logs = r.observe(
        "logs over thresholds.log_max_bytes", lambda: [str(p) for p, _ in Logs(r.profile).oversized(limit)]
    )
    for name in logs if isinstance(logs, list) else []:
        r.step(
            f"rotate {name}: rename to {Path(name).name}.<UTC stamp>, gzip it, verify every byte",
            lambda n=name: _rotate(Path(n)),
        )


def free_database_filesystem(r: Remediation) -> None:
    """Rotate and gzip the logs on the database's filesystem, largest first, until it has its free share again.

    Names the largest files under log_dir and backup_dir first (a human decides about backups). Never VACUUM:
    it needs free space the size of the database to run. The plan (which logs, in which order) is the same in
    dry run and with --execute; with --execute it stops as soon as the filesystem has enough free space.
    """
    profile = r.profile
    want = profile.thresholds.db_filesystem_free_percent
    space = filesystem_of(profile.db_path)
    r.observe("space on the database's filesystem", space.describe)
    roots = [Path(profile.log_dir), Path(profile.backup_dir)]
    r.observe(
        "largest files under log_dir and backup_dir",
        lambda: [f"{path} ({size / 2**20:.1f} MiB)" for path, size in largest_files(roots)],
    )
    logs = Logs(profile).files("all")[0]
    candidates = sorted(
        ((path, size) for path, size in largest_files([Path(profile.log_dir)], n=len(logs) or 1) if path in logs),
        key=lambda item: -item[1],
    )
    needed = want / 100 * space.total - space.free
    plan, freed = [], 0
    for path, size in candidates:
        if freed >= needed or not same_filesystem(path, space.path):
            continue
        plan.append(path)
        freed += size  # gzip of a text log keeps a few per cent: counted as all freed, and measured after each
    if needed > 0 and not plan:
        r.fail(f"no log on {space.path} to rotate; free space there by hand (the largest files are listed above)")
    for path in plan:
        if r.execute and filesystem_of(profile.db_path).free_percent >= want:
            break
        r.step(
            f"rotate {path}: rename to {path.name}.<UTC stamp>, gzip it, verify every byte", lambda p=path: _rotate(p)
        )
    if r.execute:
        r.observe("space on the database's filesystem after", lambda: filesystem_of(profile.db_path).describe())


def _gzip_verified(src: Path, dest: Path) -> tuple[int, str]:
    """Compress ``src`` into ``dest`` and prove the archive holds the same bytes (size and sha256)."""
    want, size = hashlib.sha256(), 0
    tmp = dest.with_name(dest.name + ".partial")
    with open(src, "rb") as fin, gzip.open(tmp, "wb") as fout:
        while chunk := fin.read(1 << 20):
            want.update(chunk)
            size += len(chunk)
            fout.write(chunk)
    got, got_size = hashlib.sha256(), 0
    with gzip.open(tmp, "rb") as f:
        while chunk := f.read(1 << 20):
            got.update(chunk)
            got_size += len(chunk)
    if (got_size, got.hexdigest()) != (size, want.hexdigest()):
        raise StepFailed(f"{tmp} does not decompress to the bytes of {src}; both kept")
    os.replace(tmp, dest)
    return size, want.hexdigest()


def _rotate(path: Path) -> str:
    mode = path.stat().st_mode & 0o777
    rotated = unique_path(path.parent, f"{path.name}.{stamp()}")
    os.rename(path, rotated)
    try:  # a fresh empty log in its place, unless the writer already made one
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode))
    except FileExistsError:
        pass
    archive = rotated.with_name(rotated.name + ".gz")
    seen = rotated.stat()
    size, digest = _gzip_verified(rotated, archive)
    # Drop the plain copy only when the archive holds all of it and no process can still append to it.
    now = rotated.stat()
    if now.st_size == seen.st_size == size and now.st_mtime_ns == seen.st_mtime_ns and not holders([rotated]):
        rotated.unlink()
        return f"{archive} ({size} bytes, sha256 {digest[:12]})"
    return f"{archive} ({size} bytes); {rotated} kept: still open or still growing"
