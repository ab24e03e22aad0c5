"""CLI: python -m sandbox up|down|start|fault|setup|status ..."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from pathlib import Path

from .core import (
    COMPONENTS,
    LAYOUTS,
    SERVICE_USER,
    Sandbox,
    _alive,
    ensure_frontend_deps,
    ensure_service_user,
    registry_remove,
    registry_roots,
)
from .faults import FAULTS, SandboxError


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2
        raise _Usage(message)


class _Usage(Exception):
    pass


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="python -m sandbox", description="FossaWork V2 sandbox on 127.0.0.1")
    sub = p.add_subparsers(dest="cmd", required=True, parser_class=_Parser)
    up = sub.add_parser("up", help="start a sandbox and detach")
    up.add_argument("--layout", default="runbook")
    up.add_argument("--fault", action="append", default=[])
    up.add_argument("--dir")
    up.add_argument("--json", action="store_true")
    down = sub.add_parser("down", help="stop one sandbox (--dir) or every sandbox `up` started")
    down.add_argument("--dir")
    start = sub.add_parser("start", help="(re)start one component of a running sandbox, detached")
    start.add_argument("component")
    start.add_argument("--dir", required=True)
    fault = sub.add_parser("fault", help="add, clear or list faults")
    fsub = fault.add_subparsers(dest="fcmd", required=True, parser_class=_Parser)
    add = fsub.add_parser("add")
    add.add_argument("name")
    add.add_argument("--dir")
    clr = fsub.add_parser("clear")
    clr.add_argument("name", nargs="?")
    clr.add_argument("--all", action="store_true")
    clr.add_argument("--dir")
    fsub.add_parser("list")
    sub.add_parser(
        "setup",
        help=f"install the frontend template's node_modules (npm ci) once; as root, create the system user "
        f"{SERVICE_USER} the v2 backend runs as",
    )
    status = sub.add_parser("status", help="print info() of running sandboxes as JSON")
    status.add_argument("--dir")
    return p


def _running(root: str) -> bool:
    try:
        sb = Sandbox.attach(root)
    except SandboxError:
        return False
    return any(_alive(r) for r in sb.state.get("procs", {}).values())


def _attach(dir_: str | None) -> Sandbox:
    if dir_:
        try:
            sb = Sandbox.attach(dir_)
        except SandboxError as exc:
            raise _Usage(f"no running sandbox: {exc}") from None
        if not _running(str(sb.root)):
            raise _Usage(f"no running sandbox in {sb.root}")
        return sb
    roots = [r for r in registry_roots() if _running(r)]
    if not roots:
        raise _Usage("no running sandbox (start one with: python -m sandbox up)")
    if len(roots) > 1:
        raise _Usage(f"{len(roots)} sandboxes are running; choose one with --dir ({', '.join(roots)})")
    return Sandbox.attach(roots[0])


def main(argv: list[str] | None = None) -> int:
    try:
        args = _parser().parse_args(argv)
        return _run(args)
    except _Usage as exc:
        print(f"python -m sandbox: error: {exc}", file=sys.stderr)
        return 2
    except SandboxError as exc:
        print(f"python -m sandbox: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        with contextlib.suppress(OSError):
            sys.stdout = open(os.devnull, "w")
        return 0


def _run(args) -> int:
    if args.cmd == "setup":
        installed = ensure_frontend_deps()
        print("frontend node_modules installed" if installed else "frontend node_modules already installed")
        if os.geteuid() == 0:
            created = ensure_service_user()
            print(f"system user {SERVICE_USER} " + ("created" if created else "already present"))
        else:
            print(f"not root: the v2 backend will run as the user who starts the sandbox, not {SERVICE_USER}")
        return 0
    if args.cmd == "up":
        if args.layout not in LAYOUTS:
            raise _Usage(f"unknown layout {args.layout!r} (known: {', '.join(LAYOUTS)})")
        for name in args.fault:
            if name not in FAULTS:
                raise _Usage(f"unknown fault {name!r} (see: python -m sandbox fault list)")
            if args.layout not in FAULTS[name].layouts:
                raise _Usage(f"fault {name!r} does not apply to layout {args.layout!r}")
        sb = Sandbox(root=args.dir, layout=args.layout, faults=args.fault)
        sb.start()
        info = sb.info()
        if args.json:
            print(json.dumps(info))
        else:
            print(info["targets_file"])
            print(info["profile"])
        return 0
    if args.cmd == "down":
        if args.dir:
            root = Path(args.dir).resolve()
            if not (root / "sandbox.json").exists():
                raise _Usage(f"no sandbox in {root}")
            roots = [str(root)]
        else:
            roots = registry_roots()
        for root in roots:
            try:
                box = Sandbox.attach(root)
            except SandboxError:  # a crashed start left no state: nothing of it to stop
                box = None
            if box is not None:
                box.stop()
            registry_remove(Path(root))
            print(f"stopped the sandbox in {root}" if box is not None else f"forgot {root} (nothing left running)")
        if not roots:
            print("no sandbox of this checkout is running")
        return 0
    if args.cmd == "start":
        if args.component not in COMPONENTS:
            raise _Usage(f"unknown component {args.component!r} (known: {', '.join(COMPONENTS)})")
        try:
            sb = Sandbox.attach(args.dir)
        except SandboxError as exc:
            raise _Usage(str(exc)) from None
        sb.restart_component(args.component)
        return 0
    if args.cmd == "status":
        roots = [args.dir] if args.dir else [r for r in registry_roots() if _running(r)]
        print(json.dumps([Sandbox.attach(r).info() for r in roots], indent=1))
        return 0
    if args.cmd == "fault":
        if args.fcmd == "list":
            width = max(map(len, FAULTS))
            for name, f in FAULTS.items():
                only = "" if len(f.layouts) > 1 else f" [{', '.join(f.layouts)} only]"
                print(f"{name:<{width}}  {f.description}{only}")
                for layout in f.layouts:
                    if layout == f.layouts[0] or f.must_fail(layout) != f.must_fail(f.layouts[0]):
                        label = "must fail" if layout == f.layouts[0] else f"must fail in {layout}"
                        print(f"{'':<{width}}    {label}: {', '.join(sorted(f.must_fail(layout)))}")
            return 0
        if args.fcmd == "add":
            if args.name not in FAULTS:
                raise _Usage(f"unknown fault {args.name!r} (see: python -m sandbox fault list)")
            sb = _attach(args.dir)
            if sb.layout not in FAULTS[args.name].layouts:
                raise _Usage(f"fault {args.name!r} does not apply to layout {sb.layout!r}")
            sb.inject(args.name)
            print(f"injected {args.name} into the sandbox in {sb.root}: {FAULTS[args.name].description}")
            return 0
        if args.fcmd == "clear":
            if not args.all and not args.name:
                raise _Usage("give a fault name or --all")
            if args.name and args.name not in FAULTS:
                raise _Usage(f"unknown fault {args.name!r} (see: python -m sandbox fault list)")
            sb = _attach(args.dir)
            if args.all:
                sb.clear_all()
            else:
                sb.clear(args.name)
            print(f"cleared {'every fault' if args.all else args.name} in the sandbox in {sb.root}")
            return 0
    raise _Usage(f"unknown command {args.cmd!r}")


if __name__ == "__main__":
    sys.exit(main())
