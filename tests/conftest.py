"""Self-tests: pytester for plugin behaviour, the sandbox for real faults."""

import subprocess
import sys
from pathlib import Path

import pytest

from sandbox import Sandbox

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parent.parent

# Run from / so that the checkout is not on sys.path by way of the working directory: what pytest loads is what
# the install provides.
ENTRY_POINT_PROBE = """
import importlib.metadata
if importlib.metadata.entry_points(group="pytest11", name="fossawork-health"):
    import pytest_fossawork_health
    print(pytest_fossawork_health.CHECKOUT)
"""


@pytest.fixture(scope="session")
def entry_point() -> None:
    """This checkout installed as pytest's ``fossawork-health`` plugin (./setup.sh); skips the test otherwise."""
    probe = subprocess.run([sys.executable, "-c", ENTRY_POINT_PROBE], cwd="/", capture_output=True, text=True)
    if probe.stdout.strip() != str(ROOT):
        found = probe.stdout.strip() or probe.stderr.strip()[-300:] or "no fossawork-health entry point"
        pytest.skip(f"{sys.executable} does not load this checkout's entry point ({found}); run ./setup.sh")


@pytest.fixture(scope="module")
def healthy_sandbox():
    """A live sandbox in the runbook layout with no fault, stopped (by pid, in Sandbox.stop) after the module."""
    box = Sandbox(layout="runbook").start()
    try:
        yield box
    finally:
        box.stop()
