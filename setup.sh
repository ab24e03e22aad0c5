#!/usr/bin/env bash
# One-time setup on a fresh Debian machine: Python dependencies, Debian's Chromium, the sandbox's npm packages.
# Safe to run again: every step is skipped when already done.
set -euo pipefail
cd "$(dirname "$0")"

# Editable: the code stays in this checkout, and pytest loads it through the entry point pytest_fossawork_health.
# Strict mode installs that one module as a link and a directory on sys.path; the default mode would import an
# import hook into every Python program at start (~13 ms each here) and expose nothing more.
python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore \
    --config-settings editable_mode=strict -e ".[test]"

# Bytecode for the suite's modules, as pip writes it for every package it installs: the code stays in this checkout,
# so pip compiles none of it. Without it a run whose environment sets PYTHONDONTWRITEBYTECODE compiles all of the
# suite (~0.1 s of a 0.5 s P1 verdict) every time. The plugins, conftest.py and the checks are compiled by pytest
# itself, with their assertions rewritten, when one collection (--runbook: nothing runs) may write its cache.
# Both are kept beside the sources in __pycache__ (git-ignored), and a module edited since is compiled again.
python3 -m compileall -q -x node_modules observe fixtures remediation sandbox
env -u PYTHONDONTWRITEBYTECODE python3 -m pytest --runbook -q --no-fingerprint >/dev/null

if ! command -v chromium >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then
        (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/dev/null
    else
        echo "setup.sh: Chromium is missing; install Debian's package: sudo apt-get install chromium" >&2
        exit 1
    fi
fi

python3 -m sandbox setup
