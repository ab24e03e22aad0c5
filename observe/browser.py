"""The automation's browser: can its headless Chromium start?

Playwright drives the system's Chromium (``browser_executable``); browsers
are never downloaded and ``playwright install-deps`` is never run (the
runbook's diagnostic installs packages as a check). Playwright is imported
only when a launch is asked for.
"""

from __future__ import annotations

import os
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass

CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@dataclass
class Launch:
    ok: bool
    detail: str
    elapsed: float


MANAGED = "playwright"  # browser_executable value: the Chromium Playwright manages, as the application launches it


def launch(executable: str, timeout: float) -> Launch:
    """Start and close headless Chromium through Playwright, bounded by ``timeout`` seconds.

    ``executable`` is a browser binary, or ``playwright`` for the browser Playwright installed for the
    application (its ``PLAYWRIGHT_BROWSERS_PATH``): FossaWork V2 launches that one, not the system's Chromium.
    """
    start = time.monotonic()
    managed = executable == MANAGED
    if not managed and not os.access(executable, os.X_OK):
        return Launch(False, f"{executable} is missing or not executable", 0.0)

    def attempt() -> str:
        from playwright.sync_api import sync_playwright

        # Chromium leaves org.chromium.Chromium.* scratch in TMPDIR: a directory of the probe's own, removed after.
        with tempfile.TemporaryDirectory(prefix="fossawork-browser-") as scratch, sync_playwright() as pw:
            browser = pw.chromium.launch(
                executable_path=None if managed else executable,
                args=CHROMIUM_ARGS,
                timeout=timeout * 1000,
                headless=True,
                env={**os.environ, "TMPDIR": scratch},
            )
            try:
                page = browser.new_page()
                page.set_content("<title>probe</title>")
                title = page.title()
                return f"Chromium {browser.version} rendered a page titled {title!r}"
            finally:
                browser.close()

    # A thread, because Playwright's sync API refuses to run inside an asyncio loop and may hang on a bad binary.
    pool = ThreadPoolExecutor(max_workers=1)
    future = pool.submit(attempt)
    try:
        detail = future.result(timeout=timeout + 5)
        ok = True
    except FutureTimeout:
        detail, ok = f"no browser within {timeout:g} s", False
    except Exception as exc:  # Playwright raises many types; any of them means the browser did not start
        detail, ok = f"{exc.__class__.__name__}: {str(exc).strip().splitlines()[0][:300]}", False
    finally:
        pool.shutdown(wait=False)
    return Launch(ok, detail, time.monotonic() - start)
