"""Log actions: rotate and gzip instead of truncating, every byte verified before the plain copy goes."""

from __future__ import annotations

import gzip
import hashlib
import os
import stat
from pathlib import Path

from observe.files import largest_files, same_filesystem
from observe.logs import Logs
from observe.services import holders
from observe.system import filesystem_of
from remediation.actions.core import Remediation, StepFailed, refuse_links, stamp, unique_path
from remediation.storage import evidence_dir

EVIDENCE_CATEGORIES = ("backend_errors", "errors", "automation", "startup")


def preserve_evidence(r: Remediation) -> None:
    """Copy the end of every log the checks read into the incident's folder, once per fix.

    A restart truncates FossaWork's logs and a rotation moves them: the lines that explain the incident
    go first to ``<report dir>/incident-<run id>.evidence/`` (the last ``logs.tail_bytes`` of each file,
    what the checks read), and the incident report links that folder.
    """
    if r.evidence_saved:
        return
    r.evidence_saved = True
    logs = Logs(r.profile)
    files = sorted({path for category in EVIDENCE_CATEGORIES for path in logs.files(category)[0]})
    # One folder per incident; inside it one per fix, as several fixes of one run may each save the logs.
    folder = evidence_dir(r.report_dir, r.run_id or f"manual-{stamp()}")
    dest = unique_path(folder, f"before-{r.script}" + (f"-{r.issue_type}" if r.issue_type else ""))

    def do() -> str:
        copied = 0
        for path in files:
            relative = path.relative_to(logs.root) if path.is_relative_to(logs.root) else Path(path.name)
            target = dest / relative
            target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            with open(path, "rb") as src, open(target, "xb") as out:
                src.seek(max(0, os.fstat(src.fileno()).st_size - logs.tail_bytes))
                while chunk := src.read(1 << 20):
                    out.write(chunk)
                    copied += len(chunk)
        return f"{len(files)} log(s), {copied} bytes -> {dest}"

    r.step(f"copy the last {logs.tail_bytes} bytes of each log the checks read into {dest}/", do)


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
    refuse_links(r, plan)
    if needed > 0 and not plan:
        r.fail(f"no log on {space.path} to rotate; free space there by hand (the largest files are listed above)")
    if plan:
        preserve_evidence(r)
    for path in plan:
        if r.execute and filesystem_of(profile.db_path).free_percent >= want:
            break
        r.step(
            f"rotate {path}: rename to {path.name}.<UTC stamp>, gzip it, verify every byte", lambda p=path: _rotate(p)
        )
    if r.execute:
        r.observe("space on the database's filesystem after", lambda: filesystem_of(profile.db_path).describe())


def _gzip_verified(src: Path, dest: Path, owner: os.stat_result) -> tuple[int, str]:
    """Compress ``src`` into ``dest`` (with ``owner``'s uid, gid and mode) and prove it holds the same bytes."""
    want, size = hashlib.sha256(), 0
    tmp = dest.with_name(dest.name + ".partial")
    fd = _create_like(tmp, owner)
    with open(src, "rb") as fin, open(fd, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb") as fout:
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


def _create_like(path: Path, like: os.stat_result) -> int:
    """Create the new file ``path`` with the owner, group and mode of ``like``, set before any byte is written.

    Fixes run as root while the application does not: a log re-created as root 0640 is one the service can
    no longer append to.
    """
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        if os.geteuid() == 0 or like.st_uid == os.geteuid():
            os.fchown(fd, like.st_uid, like.st_gid)
        os.fchmod(fd, like.st_mode & 0o7777)
    except OSError:
        os.close(fd)
        path.unlink(missing_ok=True)
        raise
    return fd


def _rotate(path: Path) -> str:
    st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode):
        raise StepFailed(f"{path} is a symlink: not followed out of the log directory")
    rotated = unique_path(path.parent, f"{path.name}.{stamp()}")
    os.rename(path, rotated)
    try:  # a fresh empty log in its place, unless the writer already made one
        os.close(_create_like(path, st))
    except FileExistsError:
        pass
    archive = rotated.with_name(rotated.name + ".gz")
    seen = rotated.stat()
    size, digest = _gzip_verified(rotated, archive, st)
    # Drop the plain copy only when the archive holds all of it and no process can still append to it.
    now = rotated.stat()
    if now.st_size == seen.st_size == size and now.st_mtime_ns == seen.st_mtime_ns and not holders([rotated]):
        rotated.unlink()
        return f"{archive} ({size} bytes, sha256 {digest[:12]})"
    return f"{archive} ({size} bytes); {rotated} kept: still open or still growing"
