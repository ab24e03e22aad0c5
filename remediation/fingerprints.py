"""Each run's fingerprint of its targets (``observe.fingerprint``): gathered in the background, kept beside the reports.

The fingerprint is gathered on a thread of its own while the checks run (a few milliseconds of reading files, a
pid file or the process table, and the database; ``bench/run.py`` measures what it adds to ``pytest -m p1``); the
end of the run waits at most :data:`WAIT` seconds for it. Beside the reports, in
``<report dir>/fingerprints/`` (mode 0700, files 0600, each written atomically), every target keeps two
fingerprints: its last run's and its last healthy run's, one file each, so two runs never lose each other's
update; and the key of the hashes of configuration values, created once. A failing run compares its fingerprint
with the last healthy one (``remediation.reports.changes``).

Not fingerprinted: a profile that starts a sandbox for the run (a new sandbox each time: nothing to compare
with) and a profile with ``host = "remote"`` (nothing of its host is seen from here).
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import threading
from pathlib import Path

from observe.files import read_small
from observe.fingerprint import SCHEMA, gather
from observe.secrets import redact_obj
from remediation.reports.changes import section
from remediation.storage import create_once, write_atomically

DIR = "fingerprints"
KEY_FILE = "key"
WAIT = 5.0  # seconds: every read is bounded on its own; this bounds a /proc or NFS read that hangs anyway
MAX_STORED = 4 << 20  # a stored fingerprint is well under 1 MiB (observe.fingerprint's bounds); more is not ours


class Fingerprints:
    """The fingerprints of one run's targets, and the ones its report directory keeps from earlier runs."""

    def __init__(self, report_dir: Path, targets: dict, run_id: str):
        self.dir = Path(report_dir) / DIR
        self.targets = targets  # profile name -> fixtures.target.TargetPlugin
        self.run_id = run_id
        self.taken: dict[str, dict] = {}
        self.text: dict[str, str] = {}  # as kept: made on the thread, so the run's end only writes it
        self.notes: dict[str, str] = {}  # profile name -> why it has no fingerprint
        self.unkept: OSError | None = None  # why the key could not be kept: nothing of this run can be
        self._thread: threading.Thread | None = None

    def start(self) -> Fingerprints:
        """Gather in the background (once)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._gather, name="fossawork-fingerprint", daemon=True)
            self._thread.start()
        return self

    def wait(self) -> None:
        """Wait for the fingerprints, at most WAIT seconds (started now if the run never started them: xdist)."""
        self.start()._thread.join(WAIT)
        if self._thread.is_alive():
            for name in self.targets:
                if name not in self.taken:
                    self.notes.setdefault(name, f"fingerprint not gathered within {WAIT:g} s")

    def _gather(self) -> None:
        for name, plugin in self.targets.items():
            if plugin.declared.sandbox:
                self.notes[name] = "a sandbox started for this run: no earlier run of it to compare with"
            elif plugin.declared.host == "remote":
                self.notes[name] = "host = 'remote': nothing of the target's host is observed from here"
        observed = [name for name in self.targets if name not in self.notes]
        if not observed:
            return  # nothing to fingerprint: no key is made either
        try:
            key = self.key()
        except (OSError, ValueError) as exc:
            if isinstance(exc, OSError):
                self.unkept = exc
            for name in observed:
                self.notes[name] = f"fingerprint off: its key in {self.dir} cannot be kept ({exc})"
            return
        for name in observed:
            try:
                # Redacted like every file the suite writes (a command line holding a registered secret).
                taken = redact_obj({**gather(self.targets[name].profile(), key), "run_id": self.run_id})
                self.text[name] = json.dumps(taken, indent=1, sort_keys=True) + "\n"
                self.taken[name] = taken
            except Exception as exc:  # a defect here must cost this section, not the run's report
                self.notes[name] = f"fingerprint failed: {exc.__class__.__name__}: {exc}"

    def key(self) -> bytes:
        """The key of the keyed hashes, created on first use (0600 in a 0700 directory)."""
        self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        return bytes.fromhex(create_once(self.dir / KEY_FILE, secrets.token_hex(32)).strip())

    def path(self, target: str, which: str) -> Path:
        """``<name>-<hash>.<last|healthy>.json``: the hash tells apart equal names from different targets files
        (every sandbox's profile is ``live``)."""
        source = str(Path(self.targets[target].path).resolve())
        digest = hashlib.sha256(f"{source}\0{target}".encode()).hexdigest()[:8]
        return self.dir / f"{re.sub(r'[^A-Za-z0-9_.-]', '_', target)[:40]}-{digest}.{which}.json"

    def load(self, target: str, which: str) -> dict | None:
        """A kept fingerprint; None when there is none, or it is unreadable or of another format."""
        try:
            kept = json.loads(read_small(self.path(target, which), MAX_STORED))
        except (OSError, ValueError):
            return None
        return kept if isinstance(kept, dict) and kept.get("schema") == SCHEMA else None

    def sections(self, failing: set[str]) -> list[dict]:
        """What changed since the last healthy run, for each target with a failing check."""
        self.wait()
        return [
            section(
                name,
                self.taken.get(name),
                self.load(name, "healthy"),
                self.load(name, "last"),
                self.notes.get(name),
            )
            for name in self.targets
            if name in failing
        ]

    def keep(self, healthy: set[str]) -> None:
        """Keep this run's fingerprints as the last run's, and as the last healthy run's for ``healthy`` targets.

        Raises the OSError that kept the key from being created or read: the report directory is not writable.
        """
        self.wait()
        if self.unkept is not None:
            raise self.unkept
        for name in list(self.taken):  # a copy: a thread past WAIT may still add one
            for which in ("last", "healthy") if name in healthy else ("last",):
                write_atomically(self.path(name, which), self.text[name], 0o600)
