"""recover-corrupted-database: recover into a new verified file; the original is quarantined, never deleted."""

from __future__ import annotations

import sys

from remediation import safety

FIXES = {"recover": safety.recover_database}

if __name__ == "__main__":
    sys.exit(safety.main("recover-corrupted-database", FIXES))
