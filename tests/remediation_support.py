"""Shared by the remediation self-tests: the target's database and an in-process fix runner (fixtures: conftest)."""

import contextlib
import io
import os
import sqlite3
from contextlib import closing
from pathlib import Path

from remediation import cli
from remediation.scripts import module_name


def make_db(path: Path, rows: int = 300) -> None:
    with closing(sqlite3.connect(path)) as conn, conn:
        conn.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT)")
        conn.execute("CREATE TABLE work_orders (id INTEGER PRIMARY KEY, site TEXT, notes TEXT)")
        conn.execute("CREATE TABLE dispensers (id INTEGER PRIMARY KEY, work_order_id INTEGER, serial TEXT)")
        conn.execute("CREATE INDEX wo_site ON work_orders(site)")
        conn.executemany("INSERT INTO users VALUES (?, ?)", [(i, f"u{i}@x") for i in range(20)])
        conn.executemany("INSERT INTO work_orders VALUES (?, ?, ?)", [(i, f"site {i}", "n" * 300) for i in range(rows)])
        conn.executemany("INSERT INTO dispensers VALUES (?, ?, ?)", [(i, i, f"SN{i}") for i in range(rows)])
        conn.execute("CREATE TABLE bloat (b BLOB)")
        conn.executemany("INSERT INTO bloat VALUES (?)", [(os.urandom(4000),) for _ in range(100)])
    with closing(sqlite3.connect(path)) as conn, conn:
        conn.execute("DROP TABLE bloat")  # leaves free pages for VACUUM to reclaim
    os.chmod(path, 0o644)


def run_script(tmp_path, script, issue_type, *extra):
    """Run a fix script in-process; (exit code, printed output)."""
    out = io.StringIO()
    argv = [
        *([issue_type] if issue_type else []),
        "--target-file",
        str(tmp_path / "targets.toml"),
        "--target",
        "t",
        "--report-dir",
        str(tmp_path / "reports"),
        *extra,
    ]
    with contextlib.redirect_stdout(out):
        code = cli.main(module_name(script), argv)
    return code, out.getvalue()
