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

if ! command -v chromium >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then
        (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/dev/null
    else
        echo "setup.sh: Chromium is missing; install Debian's package: sudo apt-get install chromium" >&2
        exit 1
    fi
fi

python3 -m sandbox setup
