"""The command line every fix script shares: ``python3 -m remediation.scripts.<script> ISSUE_TYPE [--execute]``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from observe import profile as profiles
from observe.secrets import redact_obj, register
from remediation.actions.core import (
    EXIT_BUSY,
    EXIT_FAILED,
    EXIT_OK,
    EXIT_REFUSED,
    Busy,
    Refused,
    Remediation,
    RemediationLock,
    StepFailed,
)
from remediation.scripts import module_name, registry, script_name, scripts
from remediation.storage import report_dir, write_atomically


def parse_args(script: str, argv: list[str] | None) -> argparse.Namespace:
    types = scripts()[script]
    parser = argparse.ArgumentParser(
        prog=f"python3 -m {module_name(script)}",
        description=f"The runbook's {script} made safe. Dry-run unless --execute.",
    )
    if types != ("",):
        parser.add_argument("issue_type", choices=types, help="Which of the runbook's cases to fix.")
    parser.add_argument("--target-file", required=True, help="TOML targets file (see targets.toml).")
    parser.add_argument("--target", required=True, help="Profile name in the targets file.")
    parser.add_argument("--execute", action="store_true", help="Carry the actions out (default: only print them).")
    parser.add_argument(
        "--report-dir",
        type=Path,
        default=None,
        help="Where the audit log and the per-target lock live (default: reports/).",
    )
    parser.add_argument("--run-id", default="", help="Incident run id recorded in the audit log.")
    parser.add_argument(
        "--accept-older-backup",
        action="store_true",
        help="recover only: install the newest verified backup when it keeps more rows than the salvage "
        "(older data than the damaged original: rows written since the backup are lost)",
    )
    parser.add_argument(
        "--result-file", type=Path, default=None, help="Write what the fix did (outcome, reason, loss) as JSON here."
    )
    args = parser.parse_args(argv)
    args.issue_type = getattr(args, "issue_type", "")
    return args


def register_secrets(profile: profiles.Profile) -> None:
    """Make every secret the profile can reach redactable before anything is printed."""
    register(profile.secret("password_env"))
    register(profile.secret("jwt_secret_env"))
    for key, value in profiles.read_env_file(profile.env_file).items():
        if any(word in key.upper() for word in ("SECRET", "PASSWORD", "TOKEN", "KEY")):
            register(value)


def main(module: str, argv: list[str] | None = None) -> int:
    """Entry point of every fix script (``module`` is its import name); returns the process exit code."""
    script = script_name(module)
    args = parse_args(script, argv)
    try:
        profile = profiles.resolve(args.target_file, args.target)
    except profiles.ProfileError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if profile.sandbox:
        print(
            f"error: profile {profile.name!r} starts a fresh sandbox; pass the live sandbox's targets file "
            "(Sandbox.write_targets) instead",
            file=sys.stderr,
        )
        return 2
    register_secrets(profile)
    r = Remediation(profile, script, args.issue_type, args.execute, report_dir(args.report_dir), args.run_id)
    r.accept_older_backup = args.accept_older_backup
    mode = "EXECUTE" if args.execute else "dry-run (add --execute to act)"
    r.say(f"{script} {args.issue_type} on target {profile.name!r}: {mode}")
    lock = RemediationLock(profile)
    code = EXIT_OK
    try:
        if args.execute:
            lock.acquire()
        registry()[script][args.issue_type].run(r)
        r.outcome = "completed"
    except Busy as exc:
        r.say(str(exc))
        r.audit("lock", "busy", str(exc))
        r.outcome, r.reason, code = "refused", str(exc), EXIT_BUSY
    except Refused as exc:
        r.outcome, r.reason, code = "refused", str(exc), EXIT_REFUSED
    except StepFailed as exc:
        r.outcome, r.reason, code = "failed", str(exc), EXIT_FAILED
    finally:
        lock.release()
        if args.result_file is not None:
            write_atomically(args.result_file, json.dumps(redact_obj(r.result())))
    if code == EXIT_OK:
        r.say(f"{script} {args.issue_type}: completed" + ("" if args.execute else " (dry-run: nothing changed)"))
    return code
