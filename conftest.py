"""Wires the suite's plugins in runs without the installed entry point; pytest_fossawork_health lists them."""

import pytest_fossawork_health

pytest_plugins = pytest_fossawork_health.PLUGINS
