#!/usr/bin/env bash
# One-time setup on a fresh Debian machine: Python dependencies, Debian's Chromium, the sandbox's npm packages.
# Safe to run again: every step is skipped when already done.
set -euo pipefail
cd "$(dirname "$0")"

python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore -e ".[test]"

if ! command -v chromium >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then
        (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/dev/null
    else
        echo "setup.sh: Chromium is missing; install Debian's package: sudo apt-get install chromium" >&2
        exit 1
    fi
fi

python3 -m sandbox setup
