#!/usr/bin/env python3
"""The README's picture of a P1 incident page: the suite against a sandbox with a P1 fault, then a screenshot.

    python3 bench/incident_picture.py                       # writes docs/incident-p1.png
    python3 bench/incident_picture.py --fault api_500 --out /path/to.png

It starts a fresh sandbox (runbook layout) with the faults (default: a corrupt database, whose fix is a script,
and the well-known JWT secret, which is escalated), runs ``pytest -m p1`` against it with its reports in a
temporary directory, stops the sandbox (by pid), and screenshots the first screen (1280x800) of ``latest.html`` in
headless Chromium. Nothing is left behind but the picture.
"""

from __future__ import annotations

import argparse
import contextlib
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from observe.browser import CHROMIUM_ARGS  # noqa: E402  (the checkout's modules, after the path above)

CHROMIUM = "/usr/bin/chromium"
FIRST_SCREEN = {"width": 1280, "height": 800}  # a laptop's browser window: what on-call sees without scrolling
DEFAULT_OUT = ROOT / "docs" / "incident-p1.png"
DEFAULT_FAULTS = ["db_corrupt", "jwt_default_secret"]


@contextlib.contextmanager
def page_of(html: Path, viewport: dict = FIRST_SCREEN) -> Iterator:
    """``html`` opened in headless Chromium (Playwright) at ``viewport``; the browser is closed afterwards."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport=viewport)
            page.goto(html.resolve().as_uri())
            page.wait_for_load_state("load")
            yield page
        finally:
            browser.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--fault",
        action="append",
        help=f"sandbox fault that fails P1 checks; repeat for several (default {' '.join(DEFAULT_FAULTS)})",
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"PNG to write (default {DEFAULT_OUT})")
    args = parser.parse_args(argv)

    from sandbox import Sandbox, SandboxError
    from sandbox.faults import FAULTS

    faults = args.fault or DEFAULT_FAULTS
    unknown = [name for name in faults if name not in FAULTS]
    if unknown:
        parser.error(f"unknown fault(s) {', '.join(unknown)} (python3 -m sandbox fault list)")
    with tempfile.TemporaryDirectory(prefix="fossawork-picture-") as scratch:
        reports = Path(scratch) / "reports"
        try:
            with Sandbox(root=Path(scratch) / "sandbox", faults=faults) as sandbox:
                # Beside the sandbox, not in the checkout's .sandboxes/: the picture names no checkout path.
                targets = sandbox.write_targets(Path(scratch) / "targets.toml")
                argv = [sys.executable, "-m", "pytest", "-m", "p1", f"--target-file={targets}", "--target=live"]
                argv += [f"--report-dir={reports}", "-q", "-p", "no:cacheprovider"]
                run = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=300)
        except SandboxError as exc:
            print(f"could not start the sandbox: {exc}", file=sys.stderr)
            return 1
        latest = reports / "latest.html"
        if not latest.exists():
            print(f"the run wrote no report (exit {run.returncode}):\n{run.stdout[-2000:]}", file=sys.stderr)
            return 1
        args.out.parent.mkdir(parents=True, exist_ok=True)
        with page_of(latest) as page:
            page.screenshot(path=str(args.out))
    print(f"{args.out} (pytest exit {run.returncode}, faults {' '.join(faults)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
