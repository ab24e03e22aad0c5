#!/usr/bin/env python3
"""Issues 5 and 16, "Speed": the suite against its floor and against the runbook's own procedures, side by side.

    python bench/run.py            # ~8 minutes; prints the table and writes bench/RESULTS.md
    python bench/run.py --quick    # fewer repetitions, for a smoke test of the benchmark itself
    python bench/run.py --p1-only  # ~1 minute: the floors, `pytest -m p1` and its fingerprint's cost; prints only

Everything runs on this machine in one go, with this Python and its installed pytest plugins:

* two floors, ``pytest -q`` on one trivial test file in a temporary directory: with plugin autoloading off
  (``PYTEST_DISABLE_PLUGIN_AUTOLOAD=1``: pytest itself, the floor the p1 target uses) and with every plugin the
  environment installs (what the earlier target used; the suite itself turns the ones it does not need off);
* ``pytest -m p1`` against a running sandbox (started before any timing), healthy and with its API hung;
* the cost of the run's fingerprint on that P1 path: ``pytest -m p1`` with it (the default) and with
  ``--no-fingerprint``, interleaved on the same healthy sandbox;
* the runbook's serial P1 diagnostics (bench/runbook_baseline.py) against the same hung API;
* the full suite, browser check included, on the healthy sandbox; and ``-n auto`` (pytest-xdist) for its verdict;
* the full suite against a sandbox serving a generated real-size frontend (bench/realsize_frontend.py: ~1,000
  TypeScript modules, a few hundred type errors, a Vite build): cold (an empty cache directory), warm (sources
  unchanged since the last run) and after one module is edited (an incremental type-check);
* the log checks (``observe.logs.Logs.since``) on generated ~1 GB logs (an error log and an automation log, and a
  busy general log standing in for both), JSON lines and FossaWork V2 text lines,
  against the runbook's ``readlines()``, each in a child process that times its own work and reports its peak RSS;
* the database checks on a generated ~1 GB SQLite file (the p1 path in a child process, the full path through
  pytest), against the runbook's ``integrity_check`` + ``COUNT(*)``.

Times are wall-clock seconds: the median of n runs and the min–max. A command's time includes Python and pytest
start-up; a child process's time covers only the work it was asked to do (the same on both sides). Generated
inputs live in a temporary directory that is removed at the end, and the incident reports of the timed runs go
there too, so the checkout is left as it was.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import shutil
import sqlite3
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
PY = sys.executable
GIB = 1024**3
MIB = 1024**2


# -- measuring -----------------------------------------------------------------------------------------------


@dataclass
class Cmd:
    """One finished command: wall seconds, exit code and output."""

    seconds: float
    code: int
    output: str


def run(argv: list[str], cwd: Path = ROOT, env: dict | None = None) -> Cmd:
    """Run a command to completion, timing it from start to exit."""
    start = time.perf_counter()
    done = subprocess.run(
        argv,
        cwd=cwd,
        env=env or os.environ.copy(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    return Cmd(time.perf_counter() - start, done.returncode, done.stdout.decode("utf-8", "replace"))


def child(mode: str, *args: str) -> dict:
    """Run ``bench/run.py --child MODE ARGS`` and return the JSON it prints (its own timing and peak RSS)."""
    done = run([PY, str(Path(__file__)), "--child", mode, *args])
    if done.code != 0:
        raise SystemExit(f"bench child {mode} failed (exit {done.code}):\n{done.output[-2000:]}")
    return json.loads(done.output.strip().splitlines()[-1])


def pytest_cmd(*args: str) -> list[str]:
    return [PY, "-m", "pytest", *args]


@dataclass
class Row:
    """One line of the results table."""

    name: str
    samples: list[float]
    baseline: str = ""
    base_samples: list[float] = field(default_factory=list)
    ratio: str = ""
    rss: str = ""
    target: str = ""
    met: bool | None = None
    note: str = ""


def spread(samples: list[float]) -> str:
    if not samples:
        return "—"
    med = statistics.median(samples)
    # Milliseconds below 0.1 s: the log rows take 10-20 ms, which two decimals of a second would hide.
    scale, unit, digits = (1000, "ms", 1) if med < 0.1 else (1, "s", 2)
    if len(samples) == 1:
        return f"{med * scale:.{digits}f} {unit} (n=1)"
    low, high = min(samples) * scale, max(samples) * scale
    return f"{med * scale:.{digits}f} {unit} ({low:.{digits}f}–{high:.{digits}f}, n={len(samples)})"


def median(samples: list[float]) -> float:
    return statistics.median(samples)


def table(rows: list[Row]) -> str:
    head = "| measurement | time: median (min–max) | baseline | baseline time | ratio | peak RSS | target | met |"
    lines = [head, "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        met = "—" if r.met is None else ("**yes**" if r.met else "**no**")
        cells = [
            r.name,
            spread(r.samples),
            r.baseline or "—",
            spread(r.base_samples) if r.base_samples else "—",
            r.ratio or "—",
            r.rss or "—",
            r.target or "—",
            met,
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# -- generated inputs ----------------------------------------------------------------------------------------

# What each generated log holds, and how many lines an hour it gets. Both layouts FossaWork writes (targets.toml:
# the runbook's and V2's) give the backend errors and the automation jobs logs of their own, so the suite's log
# checks read an error log and an automation log. Their rates are an incident's: errors above the runbook's 50 an
# hour, automation failing at its 20 %, with jobs at one a minute (a fifth of what the runbook's five browsers
# could drive at a minute a job). "mixed" is the worst case: one busy general log (4 lines a second: API traffic,
# 1 in 200 lines an error, 1 in 10 an automation job) given as every category, so that the checks parse ~14,000
# lines for each hour of window and 8 MiB (tail_bytes) for the automation day.
LOG_KINDS = {"errors": 72, "automation": 60, "mixed": 4 * 3600}


def _log_suffixes(fmt: str, kind: str) -> list[str]:
    """200 line bodies (everything after the timestamp) of one kind of log."""
    out = []
    for i in range(200):
        kind_i = {"errors": "error", "automation": "job"}.get(kind) or (
            "error" if i % 200 == 7 else "job" if i % 10 == 3 else "api"
        )
        level, typ, status = "INFO", "", ""
        if kind_i == "error":
            level, logger, msg = "ERROR", "fossawork.api.errors", ERROR_MESSAGES[i % 4]
        elif kind_i == "job":
            status = "failed" if (i // 10 if kind == "mixed" else i) % 5 == 0 else "completed"  # 1 job in 5
            logger, msg, typ = "fossawork.automation", f"automation job W-{110000 + i} {status}", "automation_job"
        else:
            logger, msg = "fossawork.api", f"GET /api/work-orders 200 in {i % 40} ms"
        if fmt == "json":
            extra = f', "type": "{typ}", "status": "{status}"' if typ else ""
            out.append(f'Z", "level": "{level}", "logger": "{logger}", "message": "{msg}"{extra}}}\n')
        else:
            out.append(f" | {level} | {logger} | handle:{40 + i % 7} | {msg}\n")
    return out


ERROR_MESSAGES = [
    "ValueError: bad dispenser id",
    "HTTPException: 404 work order not found",
    "KeyError: 'fuel_grades'",
    "PermissionError: user may not edit this work order",
]


def generate_log(path: Path, fmt: str, kind: str, size: int) -> dict:
    """A ``kind`` log of about ``size`` bytes at LOG_KINDS[kind] lines an hour, oldest first, the newest now.

    The rates are steady, so a sparse log reaches its size by reaching far back: the file's size stands for a log
    nobody rotated, and a check reads only the part its window covers.
    """
    suffixes = _log_suffixes(fmt, kind)
    prefix = '{"timestamp": "' if fmt == "json" else ""
    stamp = "%Y-%m-%dT%H:%M:%S" if fmt == "json" else "%Y-%m-%d %H:%M:%S"
    avg = sum(len(s) for s in suffixes) / len(suffixes) + len(prefix) + 19
    lines = int(size / avg) + 1
    step = 3600 / LOG_KINDS[kind]
    start = time.time() - lines * step
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", buffering=8 * MIB) as f:
        chunk, second, head = [], None, ""
        for i in range(lines):
            moment = int(start + i * step)
            if moment != second:
                second, head = moment, prefix + time.strftime(stamp, time.gmtime(moment))
            chunk.append(head + suffixes[i % 200])
            if len(chunk) == 100_000:
                f.write("".join(chunk))
                chunk.clear()
        f.write("".join(chunk))
    return {"lines": lines, "bytes": path.stat().st_size, "span_days": lines * step / 86400}


def generate_db(path: Path, size: int) -> dict:
    """A FossaWork-shaped SQLite file (the sandbox's schema) of at least ``size`` bytes: work orders, three
    dispensers each. journal_mode=OFF and synchronous=OFF while generating; big executemany transactions."""
    from sandbox import seed

    conn = sqlite3.connect(path)
    conn.executescript("PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF; PRAGMA cache_size=-262144;")
    conn.executescript(seed.SCHEMA_SQL)
    users = [
        ("u-1", "test@example.com", "test@example.com", "x" * 60, 1, "2026-01-01T00:00:00"),
        ("u-2", "tech2@example.com", "tech2@example.com", "y" * 60, 1, "2026-01-01T00:00:00"),
    ]
    conn.executemany("INSERT INTO users VALUES (?,?,?,?,?,?)", users)
    sites = ["Wawa", "Circle K", "7-Eleven", "Speedway", "Marathon", "Shell", "Sunoco", "RaceTrac"]
    cities = ["Tampa", "Orlando", "Miami", "Jacksonville", "Naples", "Ocala", "Sarasota"]
    statuses = ["pending", "scheduled", "in_progress", "completed", "cancelled"]
    makes = [("Gilbarco", "Encore 700S"), ("Wayne", "Ovation2"), ("Tokheim", "Quantium 510"), ("Bennett", "Pacific")]
    batch, order = 200_000, 0
    while True:
        lo, order = order + 1, order + batch
        conn.executemany(
            "INSERT INTO work_orders VALUES (?,?,?,?,?,?,?,?,?)",
            (
                (
                    i,
                    "u-1" if i % 10 else "u-2",
                    f"W-{110000 + i}",
                    f"{sites[i % 8]} #{i % 9973}",
                    f"{i % 9999} Main St, {cities[i % 7]}, FL",
                    ("2861", "2862", "3002", "3146")[i % 4],
                    statuses[i % 5],
                    f"2026-{i % 12 + 1:02d}-{i % 28 + 1:02d}",
                    "2026-01-01T00:00:00",
                )
                for i in range(lo, order + 1)
            ),
        )
        conn.executemany(
            "INSERT INTO dispensers VALUES (?,?,?,?,?,?,?)",
            (
                (
                    d,
                    (d - 1) // 3 + 1,
                    (d - 1) % 3 * 2 + 1,
                    *makes[d % 4],
                    "Regular, Plus, Premium, Diesel",
                    f"SN{10**7 + d * 7919 % 89_999_999}",
                )
                for d in range(3 * lo - 2, 3 * order + 1)
            ),
        )
        conn.commit()
        pages, page_size = (
            conn.execute("PRAGMA page_count").fetchone()[0],
            conn.execute("PRAGMA page_size").fetchone()[0],
        )
        if pages * page_size >= size:
            break
    conn.close()
    return {"work_orders": order, "dispensers": 3 * order, "bytes": path.stat().st_size}


def write_profile(path: Path, name: str, values: dict) -> Path:
    from observe.profile import dump

    path.write_text(dump(name, values), encoding="utf-8")
    return path


# -- child processes: each times its own work and reports its peak RSS ---------------------------------------


def _rss_mib() -> float:
    """Peak RSS of this process, MiB.

    Linux carries ru_maxrss across fork + exec: a child started by a parent of 300 MB reports at least 300 MB
    (wait4() of the child too). VmHWM is the peak of this process image alone; ru_maxrss is the fallback elsewhere.
    """
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child_main(mode: str, args: list[str]) -> None:
    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(BENCH))
    if mode == "logs-suite":  # the suite's three log checks, as health/ calls them
        import re as regex

        from observe.logs import Entry, Logs, is_automation_attempt, is_automation_failure
        from observe.profile import resolve

        profile = resolve(args[0], args[1], environ={})
        start = time.perf_counter()
        logs = Logs(profile)
        th = profile.thresholds
        # The calls health/test_backend.py and health/test_automation.py make.
        tail = logs.since(
            "backend_errors", timedelta(minutes=th.backend_errors_window_minutes), keep=Entry.is_error.fget
        )
        recent = len(tail.entries)
        rate = logs.since("errors", timedelta(minutes=th.error_rate_window_minutes), keep=Entry.is_error.fget)
        last_hour = len(rate.entries)
        attempt, failure = (
            regex.compile(profile.logs.automation_attempt),
            regex.compile(profile.logs.automation_failure),
        )
        auto = logs.since(
            "automation",
            timedelta(hours=th.automation_log_max_age_hours),
            keep=lambda e: is_automation_attempt(e, attempt),
        )
        attempts = auto.entries
        failed = sum(is_automation_failure(e, failure) for e in attempts)
        seconds = time.perf_counter() - start
        result = {
            "seconds": seconds,
            "rss_mib": _rss_mib(),
            "bytes_read": tail.bytes_read + rate.bytes_read + auto.bytes_read,
            "lines": tail.lines_read + rate.lines_read + auto.lines_read,
            "recent_errors": recent,
            "errors_last_hour": last_hour,
            "attempts": len(attempts),
            "failed": failed,
            "capped": auto.capped,
            "malformed": tail.malformed + rate.malformed + auto.malformed,
        }
    elif mode == "logs-readlines":  # the runbook's check_log_errors
        from runbook_baseline import readlines_tail

        start = time.perf_counter()
        issues = readlines_tail(args[0])
        result = {"seconds": time.perf_counter() - start, "rss_mib": _rss_mib(), "issues": len(issues)}
    elif mode == "db-p1":  # what the p1 database checks call, in their order
        from observe.db import BudgetExceeded, Database
        from observe.profile import resolve

        profile = resolve(args[0], args[1], environ={})
        start = time.perf_counter()
        db = Database(profile)
        exists = db.exists and db.size > 0
        header = db.header()
        tables = db.tables()
        for table in tables:
            db.query(f'SELECT * FROM "{table}" LIMIT 1')
        missing = [t for t in profile.db_tables if t not in tables]
        try:
            quick = db.scan("quick_check", profile.timeouts.quick_check).lines[:1]
        except BudgetExceeded:
            quick = "INCONCLUSIVE"
        db.close()
        result = {
            "seconds": time.perf_counter() - start,
            "rss_mib": _rss_mib(),
            "exists": exists,
            "header_ok": header.startswith(b"SQLite format 3"),
            "missing": missing,
            "quick_check": quick,
        }
    elif mode == "db-runbook":
        from runbook_baseline import database_full

        start = time.perf_counter()
        issues = database_full(args[0])
        result = {"seconds": time.perf_counter() - start, "rss_mib": _rss_mib(), "issues": issues}
    elif mode == "p1-runbook":
        from runbook_baseline import p1_probes

        start = time.perf_counter()
        issues = p1_probes(*args)
        result = {"seconds": time.perf_counter() - start, "rss_mib": _rss_mib(), "issues": issues}
    else:
        raise SystemExit(f"unknown child mode {mode!r}")
    print(json.dumps(result))


# -- the benchmark -------------------------------------------------------------------------------------------


def outcomes(path: Path) -> dict:
    return json.loads(path.read_text()) if path.exists() else {}


def verdict_diff(a: dict, b: dict) -> str:
    diff = sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))
    return (
        "same verdict"
        if not diff
        else f"{len(diff)} differ: " + ", ".join(f"{k}: {a.get(k)} vs {b.get(k)}" for k in diff[:4])
    )


BUDGETED = {  # check -> the profile key of its budget
    "test_database_passes_quick_check": ("quick_check", "quick_check"),
    "test_database_passes_integrity_check": ("integrity_check", "integrity"),
    "test_database_foreign_keys_are_consistent": ("foreign_key_check", "integrity"),
}


def budget_cases(junit: Path, integrity: float) -> dict:
    """{scan: outcome, seconds, skip message, budget} of the budgeted database checks, from a JUnit XML file."""
    import xml.etree.ElementTree as ET

    from observe.profile import defaults

    budgets = defaults()["timeouts"]
    env_budget = {"integrity": integrity}  # the run's timeouts.integrity (the benchmark overrides it)
    out = {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        if case.get("name") not in BUDGETED:
            continue
        scan, key = BUDGETED[case.get("name")]
        skipped, failed = case.find("skipped"), case.find("failure")
        outcome = "skipped" if skipped is not None else "failed" if failed is not None else "passed"
        message = skipped.get("message", "") if skipped is not None else ""
        out[scan] = {
            "outcome": outcome,
            "seconds": float(case.get("time", 0)),
            "message": message,
            "budget": env_budget.get(key, budgets[key]),
        }
    return out


def realsize_rows(tmp: Path, env: dict, n_warm: int, n_slow: int) -> tuple[list[Row], list[str]]:
    """The full suite against a sandbox serving the generated real-size frontend: cold, warm, one module edited.

    Cold runs each get a new report directory, so the suite's cache (``cache/frontend`` in it) starts empty; the
    warm runs reuse the last cold run's directory on unchanged sources; then one module (a new export, so its
    importers are checked again) is edited before each run. Every run's verdict is compared with the first's.
    """
    import realsize_frontend

    from sandbox import Sandbox

    say("generating the real-size frontend ...")
    source = tmp / "realsize-frontend"
    tree = realsize_frontend.generate(source)
    say("starting a sandbox that serves it ...")
    sandbox = Sandbox(layout="runbook", frontend=source).start()
    try:
        targets = sandbox.paths["targets_file"]

        def full(reports: Path, verdict: Path) -> Cmd:
            argv = [f"--target-file={targets}", "--target", "live", f"--report-dir={reports}", "-q"]
            return run(pytest_cmd(*argv, f"--recheck-result={verdict}"), env=env)

        cold, warm, edited, verdicts, reused = [], [], [], {}, []
        for i in range(n_slow):
            say(f"full suite, real-size frontend, cold, run {i + 1}/{n_slow}")
            reports = tmp / f"realsize-reports-{i}"  # new: an empty cache
            cold.append(full(reports, tmp / f"realsize-cold-{i}.json").seconds)
            verdicts[f"cold {i + 1}"] = outcomes(tmp / f"realsize-cold-{i}.json")
        first = verdicts["cold 1"]
        for i in range(n_warm):
            say(f"full suite, real-size frontend, warm, run {i + 1}/{n_warm}")
            done = full(reports, tmp / f"realsize-warm-{i}.json")
            warm.append(done.seconds)
            verdicts[f"warm {i + 1}"] = outcomes(tmp / f"realsize-warm-{i}.json")
            reused.append("reused: sources and tools unchanged" in done.output)
        for i in range(n_slow):
            say(f"full suite, real-size frontend, one module edited, run {i + 1}/{n_slow}")
            module = sandbox.paths["frontend_dir"] / "src" / "l05" / f"m05{i:03d}.ts"
            with open(module, "a", encoding="utf-8") as handle:
                handle.write(f"\nexport const edited_{i}: number = {i};\n")
            edited.append(full(reports, tmp / f"realsize-edited-{i}.json").seconds)
            verdicts[f"edited {i + 1}"] = outcomes(tmp / f"realsize-edited-{i}.json")
    finally:
        sandbox.stop()
    differ = [name for name, verdict in verdicts.items() if verdict != first]
    same = "every run gave the same verdict" if not differ else f"verdicts differ from the first cold run's: {differ}"
    failing = sorted(k.split("::")[-1] for k, v in first.items() if v in ("failed", "error"))
    what = (
        f"full suite (every check, browser included), real-size frontend ({tree['modules']:,} TypeScript modules, "
        f"{tree['lines']:,} lines, {tree['type_errors']} type errors)"
    )
    rows = [
        Row(f"{what}, cold: an empty cache", cold, note=f"failing: {', '.join(failing) or 'none'}; {same}"),
        Row(
            f"{what}, warm: sources unchanged since the last run",
            warm,
            target="≤ 10 s",
            met=median(warm) <= 10.0,
            note=f"the type-check's result reused in {sum(reused)} of {len(reused)} warm runs",
        ),
        Row(f"{what}, one module edited before each run (incremental type-check, the build again)", edited),
    ]
    return rows, [
        f"real-size frontend: {tree['modules']:,} modules, {tree['lines']:,} lines, {tree['bytes'] / MIB:.1f} MiB, "
        f"{tree['type_errors']} type errors (bench/realsize_frontend.py)"
    ]


def bytecode_fact(env: dict) -> str:
    """How much of the suite's code the timed runs load as bytecode that setup.sh compiled (the rest they compile).

    A module counts when its plain bytecode or pytest's assertion-rewritten one (the plugins, conftest.py and the
    checks) matches its source's modification time and size, as Python and pytest check before using it.
    """
    import importlib.util

    import pytest

    sources = [
        ROOT / "conftest.py",
        *(p for d in ("observe", "fixtures", "remediation", "health") for p in (ROOT / d).rglob("*.py")),
    ]
    fresh = 0
    for source in sources:
        stat = source.stat()
        stamp = struct.pack("<II", int(stat.st_mtime) & 0xFFFFFFFF, stat.st_size & 0xFFFFFFFF)
        plain = Path(importlib.util.cache_from_source(str(source)))
        rewritten = plain.with_name(f"{source.stem}.{sys.implementation.cache_tag}-pytest-{pytest.__version__}.pyc")
        fresh += any(pyc.exists() and pyc.read_bytes()[8:16] == stamp for pyc in (plain, rewritten))
    setting = env.get("PYTHONDONTWRITEBYTECODE") or "unset"
    return (
        f"the suite's bytecode: up to date for {fresh} of its {len(sources)} modules (setup.sh compiles them); "
        f"`PYTHONDONTWRITEBYTECODE` is {setting} here (when set, every run compiles a module without it again)"
    )


def summary_line(output: str) -> str:
    found = re.findall(r"^=*\s*(\d+ (?:passed|failed|skipped|error).*?) in [\d.]+s", output, re.M)
    return found[-1] if found else "?"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="Fewer repetitions (a smoke test of the benchmark).")
    parser.add_argument("--keep", action="store_true", help="Keep the temporary directory (generated inputs).")
    parser.add_argument("--log-gib", type=float, default=1.0, help="Size of each generated log, GiB (default 1).")
    parser.add_argument("--db-gib", type=float, default=1.0, help="Size of the generated database, GiB (default 1).")
    parser.add_argument(
        "--p1-only",
        action="store_true",
        help="Only the floors, the healthy P1 run and its fingerprint's cost; print them, leave RESULTS.md as it is.",
    )
    opts = parser.parse_args()
    n_fast, n_slow = (2, 1) if opts.quick else (5, 3)
    # The p1 row compares two sub-second medians: seven interleaved runs each (the issue's own measurement).
    n_floor = 2 if opts.quick else 7

    sys.path.insert(0, str(ROOT))
    from observe.profile import resolve
    from sandbox import Sandbox

    started = time.perf_counter()
    load_at_start = os.getloadavg()[0]
    tmp = Path(tempfile.mkdtemp(prefix="fossawork-bench-"))
    reports = tmp / "reports"
    env = os.environ.copy()
    env.pop("FOSSAWORK_TARGET", None)
    env.pop("FOSSAWORK_TARGET_FILE", None)
    rows: list[Row] = []
    facts: list[str] = []
    sandbox = None
    try:
        # ---- the sandbox, started outside every timed region --------------------------------------------
        say("starting the sandbox ...")
        sandbox = Sandbox(layout="runbook").start()
        targets = sandbox.paths["targets_file"]
        live = [f"--target-file={targets}", "--target", "live", f"--report-dir={reports}", "-q"]
        read_timeout = resolve(targets, "live", environ={}).timeouts.read

        # ---- the floors vs p1, interleaved so that background load hits them alike ------------------------
        floor_dir = tmp / "floor"
        floor_dir.mkdir()
        (floor_dir / "test_trivial.py").write_text("def test_trivial():\n    assert True\n")
        bare_env = {**env, "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}
        facts.append(bytecode_fact(env))
        bare, floor, p1 = [], [], []
        for i in range(n_floor):
            say(f"floors / p1 healthy, run {i + 1}/{n_floor}")
            done = run(pytest_cmd("-q", "test_trivial.py"), cwd=floor_dir, env=bare_env)
            assert done.code == 0, done.output[-1500:]
            bare.append(done.seconds)
            done = run(pytest_cmd("-q", "test_trivial.py"), cwd=floor_dir, env=env)
            assert done.code == 0, done.output[-1500:]
            floor.append(done.seconds)
            done = run(pytest_cmd("-m", "p1", *live), env=env)
            assert done.code == 0, done.output[-3000:]
            p1.append(done.seconds)
        p1_summary = summary_line(done.output)
        rows.append(
            Row(
                "`pytest -m p1`, healthy sandbox",
                p1,
                "floor: `pytest -q` on one trivial test, plugin autoloading off (`PYTEST_DISABLE_PLUGIN_AUTOLOAD=1`)",
                bare,
                f"{median(p1) / median(bare):.2f}× the floor",
                target="≤ 2× the floor (autoloading off)",
                met=median(p1) <= 2 * median(bare),
                note=p1_summary,
            )
        )
        rows.append(
            Row(
                "`pytest -m p1`, healthy sandbox (the same runs), against the other floor",
                p1,
                "floor: `pytest -q` on one trivial test, every plugin the environment autoloads",
                floor,
                f"{median(p1) / median(floor):.2f}× the floor",
                target="≤ 3× the floor (the earlier target)",
                met=median(p1) <= 3 * median(floor),
                note="the environment's plugins (Hypothesis, anyio, pytest-benchmark, ...) load in the floor's "
                "run; the suite turns off those it does not use, so this ratio flatters it",
            )
        )
        # ---- the fingerprint's cost on the P1 path: the same run without it, interleaved, each first in turn ----
        with_fp, without_fp = [], []
        for i in range(2 * n_fast):
            say(f"p1 healthy with and without its fingerprint, run {i + 1}/{2 * n_fast}")
            pair = [([], with_fp), (["--no-fingerprint"], without_fp)]
            for extra, samples in pair if i % 2 == 0 else pair[::-1]:
                done = run(pytest_cmd("-m", "p1", *live, *extra), env=env)
                assert done.code == 0, done.output[-3000:]
                samples.append(done.seconds)
        rise = median(with_fp) / median(without_fp) - 1
        rows.append(
            Row(
                "`pytest -m p1`, healthy sandbox, with the target's fingerprint (the default)",
                with_fp,
                "the same run with `--no-fingerprint`",
                without_fp,
                f"{rise * 100:+.1f} % median time",
                target="≤ +5 %",
                met=rise <= 0.05,
                note="the fingerprint (processes, code, packages, configuration, database, logs, host) is gathered "
                "on a thread beside the checks and kept in the report directory",
            )
        )
        if opts.p1_only:
            shutil.rmtree(tmp, ignore_errors=True)
            print(results(rows, facts, started, load_at_start))
            return 0

        # ---- the full suite, browser included, and its verdict under xdist -------------------------------
        full = []
        serial_verdict = tmp / "serial.json"
        for i in range(n_slow):
            say(f"full suite, run {i + 1}/{n_slow}")
            done = run(pytest_cmd(*live, f"--recheck-result={serial_verdict}"), env=env)
            full.append(done.seconds)
        full_summary = summary_line(done.output)
        rows.append(
            Row(
                "full suite (every check, browser included), healthy sandbox",
                full,
                target="≤ 10 s",
                met=median(full) <= 10.0,
                note=f"{full_summary}; the first run fills the frontend tools' cache (in the report directory) and "
                "the others reuse it, as every scheduled run after the first does",
            )
        )
        say("full suite with -n auto")
        xdist_verdict = tmp / "xdist.json"
        xdist = run(pytest_cmd("-n", "auto", *live, f"--recheck-result={xdist_verdict}"), env=env)
        rows.append(
            Row(
                "full suite, `-n auto` (pytest-xdist), healthy sandbox",
                [xdist.seconds],
                note=verdict_diff(outcomes(serial_verdict), outcomes(xdist_verdict)) + " as the serial run",
            )
        )

        # ---- the API hung --------------------------------------------------------------------------------
        sandbox.inject("api_hang")
        hung, hung_verdict = [], tmp / "hung.json"
        for i in range(n_slow):
            say(f"p1 with the API hung, run {i + 1}/{n_slow}")
            done = run(pytest_cmd("-m", "p1", *live, f"--recheck-result={hung_verdict}"), env=env)
            hung.append(done.seconds)
        hung_summary = summary_line(done.output)
        say("the runbook's serial P1 diagnostics with the API hung (about 50 s)")
        p = sandbox.profile_values()
        baseline = child("p1-runbook", p["api_url"], p["frontend_url"], p["db_path"], p["credentials_dir"])
        ceiling = read_timeout + 1.5
        rows.append(
            Row(
                f"`pytest -m p1`, API hung (read timeout {read_timeout:g} s)",
                hung,
                "runbook's serial diagnostics for the same probes (9 API requests at 5/10 s)",
                [baseline["seconds"]],
                f"{baseline['seconds'] / median(hung):.1f}× faster",
                target=f"≤ {ceiling:g} s and ≥ 10× faster",
                met=median(hung) <= ceiling and baseline["seconds"] / median(hung) >= 10,
                note=f"{hung_summary}; ≤ {ceiling:g} s: {'yes' if median(hung) <= ceiling else 'no'}, ≥ 10×: "
                f"{'yes' if baseline['seconds'] / median(hung) >= 10 else 'no'}",
            )
        )
        say("p1 with the API hung, -n auto")
        xdist_hung = tmp / "xdist-hung.json"
        done = run(pytest_cmd("-n", "auto", "-m", "p1", *live, f"--recheck-result={xdist_hung}"), env=env)
        rows.append(
            Row(
                "`pytest -n auto -m p1`, API hung",
                [done.seconds],
                note=verdict_diff(outcomes(hung_verdict), outcomes(xdist_hung)) + " as the serial run",
            )
        )
        short = []
        for i in range(n_slow):
            say(f"p1 with the API hung and FOSSAWORK_TIMEOUTS_READ=5, run {i + 1}/{n_slow}")
            short.append(run(pytest_cmd("-m", "p1", *live), env={**env, "FOSSAWORK_TIMEOUTS_READ": "5"}).seconds)
        rows.append(
            Row(
                "`pytest -m p1`, API hung, read timeout 5 s (`FOSSAWORK_TIMEOUTS_READ=5`: the runbook's, the default "
                "of every profile but the sandbox's)",
                short,
                "the same runbook run (its own 5/10 s timeouts)",
                [baseline["seconds"]],
                f"{baseline['seconds'] / median(short):.1f}× faster",
                target="≤ 6 s (the timeout + 1 s)",
                met=median(short) <= 6.0,
                note="informative: the cost is one read timeout, whatever the profile says; at 5 s, 10× the "
                "runbook's 50 s would mean a verdict, start-up included, inside that one timeout",
            )
        )
        sandbox.clear("api_hang")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)  # the second block's cleanup will not run
        raise
    finally:
        if sandbox is not None:
            sandbox.stop()

    try:
        # ---- the full suite on a real-size frontend ---------------------------------------------------------
        found, notes = realsize_rows(tmp, env, n_fast, n_slow)
        rows += found
        facts += notes

        # ---- logs ------------------------------------------------------------------------------------------
        for fmt in ("json", "text"):
            log_dir = tmp / f"logs-{fmt}"
            files = {}
            for kind in ("errors", "automation", "mixed"):
                say(f"generating a {opts.log_gib:g} GiB {fmt} {kind} log ...")
                files[kind] = f"{kind}.{'jsonl' if fmt == 'json' else 'log'}"
                info = generate_log(log_dir / files[kind], fmt, kind, int(opts.log_gib * GIB))
                facts.append(
                    f"{fmt} {kind} log: {info['bytes'] / GIB:.2f} GiB, {LOG_KINDS[kind]:,} lines an hour, "
                    f"{info['span_days']:,.1f} days"
                )
            layouts = {
                "dedicated": {
                    "backend_errors": [files["errors"]],
                    "errors": [files["errors"]],
                    "automation": [files["automation"]],
                },
                "mixed": dict.fromkeys(("backend_errors", "errors", "automation"), [files["mixed"]]),
            }
            for layout, globs in layouts.items():
                profile = write_profile(
                    tmp / f"logs-{fmt}-{layout}.toml",
                    "bench-logs",
                    {"log_dir": str(log_dir), "log_timezone": "UTC", "logs": globs},
                )
                say(f"the log checks on the {fmt} {layout} logs ...")
                suite = [child("logs-suite", str(profile), "bench-logs") for _ in range(n_fast)]
                read = log_dir / globs["backend_errors"][0]
                say(f"readlines() of {read.name} ...")
                base = [child("logs-readlines", str(read)) for _ in range(n_slow)]
                s, b = [r["seconds"] for r in suite], [r["seconds"] for r in base]
                rss = max(r["rss_mib"] for r in suite)
                last = suite[-1]
                size = sum((log_dir / g[0]).stat().st_size for g in {tuple(v) for v in globs.values()}) / GIB
                what = (
                    "the error log and the automation log, as FossaWork writes them"
                    if layout == "dedicated"
                    else "one busy general log given as every category (worst case, informative)"
                )
                rows.append(
                    Row(
                        f"log checks (tail, errors in the last hour, failure rate), {fmt} lines: {what}; "
                        f"{size:.2f} GiB",
                        s,
                        f"runbook: `readlines()` of the {read.stat().st_size / GIB:.2f} GiB "
                        + ("error log" if layout == "dedicated" else "log"),
                        b,
                        f"{median(b) / median(s):.0f}× faster",
                        f"{rss:.0f} MiB (readlines: {max(r['rss_mib'] for r in base):.0f} MiB)",
                        "≥ 100× faster, < 50 MB RSS" if layout == "dedicated" else "< 50 MB RSS",
                        (median(b) / median(s) >= 100 if layout == "dedicated" else True) and rss < 50,
                        note=f"read {last['bytes_read'] / MIB:.1f} MiB, {last['lines']:,} lines; "
                        f"{last['errors_last_hour']} errors in the last hour, "
                        f"{last['failed']}/{last['attempts']} automation attempts failed in 24 h"
                        + (" (window capped at tail_bytes: counts are lower bounds)" if last["capped"] else ""),
                    )
                )
            shutil.rmtree(log_dir)

        # ---- database --------------------------------------------------------------------------------------
        say(f"generating a {opts.db_gib:g} GiB SQLite database ...")
        db_path = tmp / "db" / "fossawork_v2.db"
        db_path.parent.mkdir()
        t0 = time.perf_counter()
        info = generate_db(db_path, int(opts.db_gib * GIB))
        facts.append(
            f"database: {info['bytes'] / GIB:.2f} GiB, {info['work_orders']:,} work orders, "
            f"{info['dispensers']:,} dispensers, generated in {time.perf_counter() - t0:.0f} s"
        )
        profile = write_profile(tmp / "db.toml", "bench-db", {"db_path": str(db_path), "host": "local"})
        integrity = resolve(profile, "bench-db", environ={}).timeouts.integrity
        db_args = [f"--target-file={profile}", "--target", "bench-db", f"--report-dir={reports}", "-q", "-rs"]
        p1db = [child("db-p1", str(profile), "bench-db") for _ in range(n_fast)]
        say("the p1 database checks through pytest ...")
        p1_pytest = run(pytest_cmd("-m", "p1 and database", *db_args), env=env)
        s = [r["seconds"] for r in p1db]
        rss = max(r["rss_mib"] for r in p1db)
        say("the runbook's integrity_check + COUNT(*) ...")
        base = child("db-runbook", str(db_path))
        rows.append(
            Row(
                "database p1 path (file, header, schema, one row per table, quick_check under its 0.25 s budget)",
                s,
                "runbook: `integrity_check` + `COUNT(*)` per table",
                [base["seconds"]],
                f"{base['seconds'] / median(s):.0f}× faster",
                f"{rss:.0f} MiB (runbook: {base['rss_mib']:.0f} MiB)",
                "≤ 0.5 s, < 100 MB RSS",
                median(s) <= 0.5 and rss < 100,
                note=f'quick_check: {p1db[-1]["quick_check"]}; through pytest `-m "p1 and database"`: '
                f"{p1_pytest.seconds:.2f} s, {summary_line(p1_pytest.output)}",
            )
        )
        # Full path: with the profile's budget, then with a 2 s one that a 1 GB scan cannot meet. Every budgeted
        # scan must either finish inside its budget or be skipped as INCONCLUSIVE, never pass late.
        for budget in (integrity, 2.0):
            runs, peaks = [], []
            for i in range(max(1, n_slow - 1) if budget == integrity else 1):
                say(f"the full database checks through pytest, budget {budget:g} s, run {i + 1} ...")
                junit, rss_file = tmp / f"db-{budget:g}-{i}.xml", tmp / f"db-{budget:g}-{i}.rss"
                done = run(
                    pytest_cmd("-m", "database", *db_args, f"--junitxml={junit}", "-p", "rss_plugin"),
                    env={
                        **env,
                        "FOSSAWORK_TIMEOUTS_INTEGRITY": str(budget),
                        "FOSSAWORK_BENCH_RSS": str(rss_file),
                        "PYTHONPATH": os.pathsep.join(filter(None, [str(BENCH), env.get("PYTHONPATH")])),
                    },
                )
                runs.append((done, budget_cases(junit, budget)))
                peaks.append(float(rss_file.read_text()))
            cases = runs[-1][1]
            honest = all(
                (c["outcome"] == "skipped" and "INCONCLUSIVE" in c["message"])
                or (c["outcome"] != "skipped" and c["seconds"] <= c["budget"] + 1.0)
                for _, found in runs
                for c in found.values()
                if c["budget"] is not None
            )
            if budget != integrity:  # a budget the scan cannot meet must show up as INCONCLUSIVE
                honest = honest and cases["integrity_check"]["outcome"] == "skipped"
            times = [d.seconds for d, _ in runs]
            rows.append(
                Row(
                    f"database full path, `pytest -m database`, integrity and foreign-key budget (timeouts.integrity) "
                    f"{budget:g} s" + ("" if budget == integrity else " (`FOSSAWORK_TIMEOUTS_INTEGRITY=2`)"),
                    times,
                    "runbook: `integrity_check` + `COUNT(*)` per table",
                    [base["seconds"]],
                    f"{base['seconds'] / median(times):.1f}× faster",
                    f"{max(peaks):.0f} MiB (runbook: {base['rss_mib']:.0f} MiB)",
                    "each scan inside its budget, or INCONCLUSIVE (skip), never a late pass",
                    honest,
                    note=f"{summary_line(runs[-1][0].output)}; "
                    + "; ".join(
                        f"{name}: {c['outcome']} in {c['seconds']:.2f} s"
                        + (" (INCONCLUSIVE)" if "INCONCLUSIVE" in c["message"] else "")
                        for name, c in cases.items()
                        if c["budget"] is not None
                    ),
                )
            )
    finally:
        if opts.keep:
            say(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    text = results(rows, facts, started, load_at_start)
    (BENCH / "RESULTS.md").write_text(text, encoding="utf-8")
    print(text)
    return 0


def results(rows: list[Row], facts: list[str], started: float, load_at_start: float) -> str:
    """The results as Markdown: how and where they were measured, the table, and the notes of its rows."""
    load = os.getloadavg()
    header = [
        "# Benchmark results",
        "",
        f"Measured by `python bench/run.py` on {datetime.now():%Y-%m-%d %H:%M}: {platform.python_implementation()} "
        f"{platform.python_version()}, pytest plugins as installed, {os.cpu_count()} cores, load average "
        f"{load_at_start:.1f} at the start and {load[0]:.1f} at the end; "
        f"{time.perf_counter() - started:.0f} s in total.",
        "",
    ]
    notes = ["", "Notes:", ""] + [f"- {r.name}: {r.note}" for r in rows if r.note] + [f"- {f}" for f in facts]
    return "\n".join(header) + table(rows) + "\n" + "\n".join(notes) + "\n"


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        child_main(sys.argv[2], sys.argv[3:])
    else:
        sys.exit(main())
