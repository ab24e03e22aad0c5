"""The fault catalogue: each fault is a real defect injected into a running sandbox and undone exactly, declared
with the health checks it must fail (and no other).

An inject function changes the sandbox and records in its fault record (a dict kept in the
state file) everything the generic clear needs: flag files, files moved to the attic,
files created, file modes changed, backups of files rewritten, lines appended, helper
processes started and services to restart.

tests/test_fault_matrix.py injects every fault and checks that exactly its checks fail.
"""

from __future__ import annotations

import os
import random
import shutil
import sqlite3
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from . import logfmt
from .seed import random_secret


class SandboxError(Exception):
    """Anything the sandbox cannot do; str() is one line."""


@dataclass(frozen=True)
class Fault:
    """A defect the sandbox can inject, and the checks it must fail (and no other)."""

    description: str
    layouts: tuple[str, ...] = ("runbook", "v2")
    inject: Callable | None = field(default=None, repr=False, compare=False)
    thresholds: dict | None = None
    category: str = ""
    fails: frozenset[str] = frozenset()


FAULTS: dict[str, Fault] = {}

# Checks that fail together, named once for the faults that share them.
LOGIN_DOWN = frozenset({"test_auth_route_exists[login]", "test_login_with_test_user_succeeds"})
BACKEND_DOWN = LOGIN_DOWN | {
    "test_api_endpoint_answers_200_with_json[health]",
    "test_backend_process_is_running",
    "test_service_is_active[backend]",
}
FRONTEND_DOWN = frozenset(
    {
        "test_frontend_page_answers_200_with_html",
        "test_frontend_dev_server_is_running",
        "test_service_is_active[frontend]",
    }
)
BAD_TOKENS = frozenset(
    f"test_validate_rejects_bad_token[{k}]"
    for k in ("missing", "malformed", "expired", "wrong_signature", "alg_none", "alg_confusion")
)


def _register(name: str, fault: Fault) -> None:
    FAULTS[name] = fault


def fault(name: str, description: str, fails: Iterable[str], layouts=("runbook", "v2"), category=""):
    """Register the decorated inject function as fault ``name``."""

    def register(fn):
        _register(name, Fault(description, tuple(layouts), fn, None, category, frozenset(fails)))
        return fn

    return register


def _flag(name: str, description: str, category: str, fails: Iterable[str]) -> None:
    def inject(sb, rec):
        sb.flag(name, rec)

    _register(name, Fault(description, ("runbook", "v2"), inject, None, category, frozenset(fails)))


def _threshold(name: str, description: str, fails: Iterable[str], **values) -> None:
    _register(name, Fault(description, ("runbook", "v2"), None, values, "threshold", frozenset(fails)))


# --- backend process --------------------------------------------------------------------------


@fault("backend_down", "Backend uvicorn process stopped (by pid).", fails=BACKEND_DOWN, category="backend")
def _backend_down(sb, rec):
    sb.stop_component("backend")
    rec["restart"].append("backend")


@fault(
    "backend_duplicate",
    "A second uvicorn backend process with the same cwd on another port.",
    fails={"test_backend_process_is_not_duplicated"},
    category="backend",
)
def _backend_duplicate(sb, rec):
    sb.spawn_backend("backend_duplicate", sb.free_port())
    rec["procs"].append("backend_duplicate")


@fault(
    "port_taken",
    "Backend stopped and a non-uvicorn process (python -m http.server) listens on the API port.",
    fails=BACKEND_DOWN | {"test_api_port_is_held_by_the_backend"},
    category="backend",
)
def _port_taken(sb, rec):
    sb.stop_component("backend")
    rec["restart"].append("backend")
    cwd = sb.attic_dir("port_taken")
    rec["created"].append(str(cwd))
    port = sb.ports["api"]
    sb.spawn("port_taken", [sb.python, "-m", "http.server", str(port), "--bind", "127.0.0.1"], cwd=cwd)
    rec["procs"].append("port_taken")
    sb.wait_tcp(port, "port_taken")


@fault(
    "backend_cpu_burn",
    "A thread in the backend process spins (process CPU ~100 %).",
    fails={"test_backend_process_cpu_is_under_threshold"},
    category="backend",
)
def _cpu_burn(sb, rec):
    sb.flag("backend_cpu_burn", rec)


@fault(
    "api_500",
    "The running backend's dispensers route answers 500 until the process is restarted.",
    fails={"test_api_endpoint_answers_200_with_json[dispensers]"},
    category="api",
)
def _api_500(sb, rec):
    # The flag names the backend pid: the broken state lives in that process, as a poisoned connection pool would.
    sb.flag("api_500", rec)
    (sb.paths["fault_dir"] / "api_500").write_text(f"{sb.state['procs']['backend']['pid']}\n")


_flag(
    "api_hang",
    "Every API request is accepted but never answered.",
    "api",
    LOGIN_DOWN | {"test_api_endpoint_answers_200_with_json[health]"},
)
_flag("api_slow", "Every API request is delayed 1.5 s.", "api", {"test_api_latency_is_under_threshold"})
_flag("validate_accepts_any", "/api/auth/validate answers 200 to any token, even none.", "auth", BAD_TOKENS)
_flag(
    "alg_none_accepted",
    "Tokens signed with alg 'none' are accepted by validate and the protected routes.",
    "auth",
    {"test_validate_rejects_bad_token[alg_none]"},
)
_flag("login_500", "Login answers 500.", "auth", LOGIN_DOWN)
_flag(
    "alg_confusion_accepted",
    "Validate accepts a token claiming RS256 but HMAC-signed with the secret.",
    "auth",
    {"test_validate_rejects_bad_token[alg_confusion]"},
)
_flag(
    "auth_routes_missing",
    "Validate and logout answer 404 (their router is not mounted).",
    "auth",
    {"test_auth_route_exists[validate]", "test_auth_route_exists[logout]", "test_token_from_login_validates"},
)
_flag(
    "validate_rejects_valid",
    "Validate answers 401 even to a fresh token from login.",
    "auth",
    {"test_token_from_login_validates"},
)
_flag(
    "login_accepts_any",
    "Login answers 200 with a token to any password.",
    "auth",
    {"test_login_rejects_wrong_password"},
)
_flag(
    "cors_wildcard",
    "API answers Access-Control-Allow-Origin: * with Allow-Credentials: true.",
    "security",
    {"test_api_does_not_allow_any_origin_with_credentials"},
)


def _rewrite_secret(sb, rec, secret: str) -> None:
    env = sb.paths["env_file"]
    sb.backup_file(env, rec)
    values = logfmt_env(env)
    values["SECRET_KEY"] = secret
    mode = os.stat(env).st_mode & 0o777
    env.write_text("".join(f"{k}={v}\n" for k, v in values.items()))
    os.chmod(env, mode)
    sb.restart_component("backend")
    rec["restart"].append("backend")


def logfmt_env(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        if "=" in line:
            k, _, v = line.partition("=")
            out[k.strip()] = v.strip()
    return out


@fault(
    "jwt_short_secret",
    "Backend restarted with a 16-character JWT secret (.env updated).",
    fails={"test_jwt_secret_is_at_least_32_characters"},
    category="auth",
)
def _jwt_short(sb, rec):
    _rewrite_secret(sb, rec, random_secret(16))


DEFAULT_SECRET = "your-secret-key-here-change-in-production-please"


@fault(
    "jwt_default_secret",
    f"Backend restarted with the well-known example secret {DEFAULT_SECRET!r}.",
    fails={"test_jwt_secret_is_not_a_known_default"},
    category="auth",
)
def _jwt_default(sb, rec):
    _rewrite_secret(sb, rec, DEFAULT_SECRET)


# --- database ---------------------------------------------------------------------------------


@fault(
    "db_missing",
    "Database file moved aside to the attic.",
    # The application reads its users from the database: a broken database is also a broken login.
    fails=LOGIN_DOWN | {"test_database_file_exists"},
    category="database",
)
def _db_missing(sb, rec):
    sb.move_aside(sb.paths["db"], rec)


@fault(
    "db_empty",
    "Database replaced by a zero-byte file.",
    fails=LOGIN_DOWN | {"test_database_file_is_not_empty"},
    category="database",
)
def _db_empty(sb, rec):
    db = sb.paths["db"]
    sb.move_aside(db, rec)
    db.touch()
    os.chmod(db, 0o600)
    rec["created"].append(str(db))


@fault(
    "db_not_a_database",
    "Database replaced by a text file.",
    fails=LOGIN_DOWN
    | {
        "test_database_is_a_readable_sqlite_database",
        "test_backend_error_log_has_no_critical_error_pattern[DatabaseError]",
    },
    category="database",
)
def _db_text(sb, rec):
    db = sb.paths["db"]
    sb.move_aside(db, rec)
    db.write_text("This is not a database: it is a text file left here by a broken deploy.\n" * 40)
    os.chmod(db, 0o600)
    rec["created"].append(str(db))


@fault(
    "db_no_tables",
    "Database replaced by a valid SQLite file with no tables.",
    fails=LOGIN_DOWN | {"test_database_has_expected_tables"},
    category="database",
)
def _db_no_tables(sb, rec):
    db = sb.paths["db"]
    sb.move_aside(db, rec)
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA user_version = 1")
    conn.commit()
    conn.close()
    os.chmod(db, 0o600)
    rec["created"].append(str(db))


@fault(
    "db_corrupt",
    "Garbage written over b-tree pages of work_orders (header intact; integrity_check fails).",
    fails={
        "test_database_passes_quick_check",
        "test_database_passes_integrity_check",
        "test_database_foreign_keys_are_consistent",
        "test_api_endpoint_answers_200_with_json[work_orders]",
        "test_backend_error_log_has_no_critical_error_pattern[DatabaseError]",
    },
    category="database",
)
def _db_corrupt(sb, rec):
    db = sb.paths["db"]
    sb.backup_file(db, rec)
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
        pages = [
            r[0]
            for r in conn.execute(
                "SELECT pageno FROM dbstat WHERE name = 'work_orders' AND pagetype = 'leaf' ORDER BY pageno"
            )
        ]
    finally:
        conn.close()
    rng = random.Random(7)
    victims = pages[2:5] if len(pages) > 5 else pages[-3:]
    with open(db, "r+b") as f:
        for pageno in victims:
            # keep the leaf page header, overwrite its cell pointer array with garbage:
            # quick_check / integrity_check then report rows of errors instead of failing outright
            off = (pageno - 1) * page_size
            f.seek(off)
            ncells = int.from_bytes(f.read(8)[3:5], "big")
            f.seek(off + 8)
            f.write(rng.randbytes(2 * max(ncells, 4)))


@fault(
    "db_fk_violation",
    "A dispensers row points to a missing work order (inserted with foreign_keys off).",
    fails={"test_database_foreign_keys_are_consistent"},
    category="database",
)
def _db_fk(sb, rec):
    db = sb.paths["db"]
    sb.backup_file(db, rec)
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA foreign_keys = OFF")
    conn.execute(
        "INSERT INTO dispensers (work_order_id, dispenser_number, make, model, fuel_grades, serial_number)"
        " VALUES (987654, 1, 'Gilbarco', 'Encore 700 S', 'Regular', 'SNORPHAN1')"
    )
    conn.commit()
    conn.close()


@fault(
    "db_locked",
    "A separate process holds BEGIN EXCLUSIVE on the database (killed by pid on clear).",
    # The application cannot log anyone in while the database is locked.
    fails=LOGIN_DOWN | {"test_database_is_not_locked"},
    category="database",
)
def _db_locked(sb, rec):
    sb.spawn("dblock", [sb.python, "-m", "sandbox.helpers", "dblock", str(sb.paths["db"])], cwd=sb.root)
    rec["procs"].append("dblock")
    sb.wait_output("dblock", "locked")


@fault(
    "db_bloated",
    "Free pages > 10 % of the file (a big blob table inserted, then dropped).",
    fails={"test_database_free_pages_are_under_ratio"},
    category="database",
)
def _db_bloated(sb, rec):
    db = sb.paths["db"]
    sb.backup_file(db, rec)
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE bloat (data BLOB)")
    conn.executemany("INSERT INTO bloat VALUES (randomblob(16000))", [()] * 600)
    conn.commit()
    conn.execute("DROP TABLE bloat")
    conn.commit()
    conn.close()


def _chmod(path_key: str, mode: int):
    def inject(sb, rec):
        sb.chmod(sb.paths[path_key], mode, rec)

    return inject


FAULTS["db_unreadable"] = Fault(
    "Database file chmod 0200: its owner (the service) cannot read it.",
    ("runbook", "v2"),
    _chmod("db", 0o200),
    None,
    "database",
    fails=frozenset({"test_database_file_is_readable"}),
)
FAULTS["db_unwritable"] = Fault(
    "Database file chmod 0400: its owner (the service) cannot write it.",
    ("runbook", "v2"),
    _chmod("db", 0o400),
    None,
    "database",
    fails=frozenset({"test_database_file_is_writable"}),
)
FAULTS["db_world_readable"] = Fault(
    "Database file chmod 0644 (healthy: 0600).",
    ("runbook", "v2"),
    _chmod("db", 0o644),
    None,
    "security",
    fails=frozenset({"test_secret_files_are_not_readable_by_others"}),
)
FAULTS["env_world_readable"] = Fault(
    "backend/.env chmod 0644 (healthy: 0600).",
    ("runbook", "v2"),
    _chmod("env_file", 0o644),
    None,
    "security",
    fails=frozenset({"test_secret_files_are_not_readable_by_others"}),
)


# --- credentials ------------------------------------------------------------------------------


@fault(
    "credentials_missing",
    "Stored WorkFossa credentials gone (runbook: dir moved aside; v2: rows moved to a side table).",
    fails={"test_credential_store_holds_credentials"},
    category="credentials",
)
def _cred_missing(sb, rec):
    if sb.layout == "runbook":
        sb.move_aside(sb.paths["credentials_dir"], rec)
        return
    sb.backup_file(sb.paths["db"], rec)  # clear restores the exact file
    conn = sqlite3.connect(sb.paths["db"])
    conn.execute("CREATE TABLE user_credentials_quarantine AS SELECT * FROM user_credentials")
    conn.execute("DELETE FROM user_credentials")
    conn.commit()
    conn.close()


@fault(
    "credentials_world_readable",
    "Credentials dir 0755 and files 0644 (healthy: 0700 / 0600).",
    layouts=("runbook",),
    fails={"test_secret_files_are_not_readable_by_others"},
    category="credentials",
)
def _cred_world(sb, rec):
    d = sb.paths["credentials_dir"]
    sb.chmod(d, 0o755, rec)
    for f in sorted(d.iterdir()):
        sb.chmod(f, 0o644, rec)


# --- logs -------------------------------------------------------------------------------------


@fault(
    "error_burst",
    "60 error lines in the last hour in a new file under logs/errors.",
    fails={"test_error_logs_hold_few_errors_in_the_last_hour"},
    category="logs",
)
def _error_burst(sb, rec):
    t = logfmt.now()
    name = (
        "errors/integration-errors.jsonl"
        if sb.layout == "runbook"
        else f"errors/integration-errors-{t.astimezone():%Y-%m-%d}.jsonl"
    )
    path = sb.paths["log_dir"] / name
    lines = []
    for k in range(60):
        when = t - timedelta(seconds=45 * k + 5)
        lines.append(
            logfmt.line(
                sb.layout,
                when,
                "ERROR",
                "fossawork.integration",
                f"WorkFossa sync failed for work order W-{110000 + k}: HTTP 502",
                "sync_work_orders:144",
            )
        )
    logfmt.append(path, list(reversed(lines)))
    rec["created"].append(str(path))


def _append_recent(sb, rec, kind: str, messages: list[tuple[str, str, str]], spacing_s: int = 120) -> None:
    t = logfmt.now()
    path = logfmt.log_path(sb.paths["log_dir"], sb.layout, kind, t)
    lines = []
    for k, (level, logger, msg) in enumerate(messages):
        when = t - timedelta(seconds=spacing_s * (len(messages) - k))
        lines.append(logfmt.line(sb.layout, when, level, logger, msg, "handle:120"))
    sb.append_lines(path, lines, rec)


@fault(
    "backend_error_burst",
    "8 recent errors appended to the backend error log only.",
    fails={"test_backend_error_log_has_few_recent_errors"},
    category="logs",
)
def _backend_error_burst(sb, rec):
    _append_recent(
        sb,
        rec,
        "backend_errors",
        [
            ("ERROR", "fossawork.workorders", f"Unhandled exception in GET /api/work-orders: KeyError('customer') #{k}")
            for k in range(8)
        ],
    )


@fault(
    "critical_error_pattern",
    "Recent ConnectionError, DatabaseError, TimeoutError and MemoryError lines in the backend error log.",
    fails={
        f"test_backend_error_log_has_no_critical_error_pattern[{p}]"
        for p in ("ConnectionError", "DatabaseError", "TimeoutError", "MemoryError")
    },
    category="logs",
)
def _critical(sb, rec):
    _append_recent(
        sb,
        rec,
        "backend_errors",
        [
            ("ERROR", "fossawork.database", "sqlite3.DatabaseError: database disk image is malformed"),
            (
                "ERROR",
                "fossawork.workfossa",
                "requests.exceptions.ConnectionError: app.workfossa.com: Connection reset",
            ),
            ("ERROR", "fossawork.automation", "TimeoutError: form submission did not complete within 30 s"),
            ("ERROR", "fossawork.scraper", "MemoryError: cannot allocate page buffer"),
        ],
    )


@fault(
    "import_error",
    "A recent ModuleNotFoundError (ImportError) line in the startup log.",
    fails={"test_backend_logs_show_no_import_errors"},
    category="logs",
)
def _import_error(sb, rec):
    _append_recent(
        sb,
        rec,
        "general",
        [
            ("ERROR", "fossawork.main", "Failed to import app.routes.automation"),
            ("ERROR", "fossawork.main", "ModuleNotFoundError: No module named 'fossa_missing'"),
        ],
        spacing_s=30,
    )


@fault(
    "backend_log_missing",
    "Backend error log file(s) moved aside to the attic.",
    fails={"test_backend_error_log_exists"},
    category="logs",
)
def _backend_log_missing(sb, rec):
    log_dir = sb.paths["log_dir"]
    if sb.layout == "runbook":
        files = [log_dir / logfmt.FILES["runbook"]["backend_errors"]]
    else:
        files = sorted((log_dir / "errors").glob("backend-errors-*.jsonl"))
    for f in files:
        if f.exists():
            sb.move_aside(f, rec)


@fault(
    "log_oversized",
    "A 101 MiB log file of log lines under logs/backend.",
    fails={"test_log_files_are_under_size_limit"},
    category="logs",
)
def _log_oversized(sb, rec):
    t = logfmt.now() - timedelta(hours=3)
    path = sb.paths["log_dir"] / "backend" / "backend-debug.jsonl"
    line = (
        logfmt.line(sb.layout, t, "DEBUG", "fossawork.scraper", "DOM snapshot chunk " + "x" * 180, "dump_dom:52") + "\n"
    )
    block = (line * (1024 * 1024 // len(line) + 1)).encode()[: 1024 * 1024]
    block = block[: block.rfind(b"\n") + 1]
    rec["created"].append(str(path))
    with open(path, "wb") as f:
        written = 0
        while written <= 100 * 1024 * 1024:
            f.write(block)
            written += len(block)


def _automation(sb, rec, n: int, failed: int, age: timedelta, spacing_min: int) -> None:
    auto_dir = sb.paths["log_dir"] / "automation"
    for f in sorted(auto_dir.glob("*.jsonl")):
        sb.move_aside(f, rec)
    t = logfmt.now() - age
    fail_at = {round(i * n / failed) for i in range(failed)} if failed else set()
    entries = []
    for k in range(n):
        when = t - timedelta(minutes=spacing_min * k + 2)
        ok = k not in fail_at
        entries.append(
            (
                when,
                logfmt.automation_line(
                    sb.layout, when, 5000 + n - k, ok, "" if ok else "Timeout waiting for selector #work-orders"
                ),
            )
        )
    for path in logfmt.write_lines(sb.paths["log_dir"], sb.layout, "automation", entries):
        rec["created"].append(str(path))
        if age:
            logfmt.set_mtime(path, t)


@fault(
    "automation_failure_30",
    "Recent automation attempts ~30 % failed (6 of 20).",
    fails={"test_automation_failure_rate_is_under_threshold"},
    category="automation",
)
def _auto30(sb, rec):
    _automation(sb, rec, 20, 6, timedelta(0), 8)


@fault(
    "automation_failure_60",
    "Recent automation attempts ~60 % failed (12 of 20).",
    fails={"test_automation_failure_rate_is_under_threshold", "test_automation_failure_rate_is_not_critical"},
    category="automation",
)
def _auto60(sb, rec):
    _automation(sb, rec, 20, 12, timedelta(0), 8)


@fault(
    "automation_logs_stale",
    "Newest automation entries and files are 3 days old (recent ones moved aside).",
    fails={"test_automation_logs_are_recent"},
    category="automation",
)
def _auto_stale(sb, rec):
    _automation(sb, rec, 20, 1, timedelta(days=3), 15)


# --- frontend ---------------------------------------------------------------------------------


@fault("frontend_down", "Vite dev server stopped (by pid).", fails=FRONTEND_DOWN, category="frontend")
def _frontend_down(sb, rec):
    sb.stop_component("frontend")
    rec["restart"].append("frontend")


@fault(
    "frontend_not_html",
    "Vite stopped; a process answers 200 application/json on the frontend port.",
    fails=FRONTEND_DOWN,
    category="frontend",
)
def _frontend_json(sb, rec):
    sb.stop_component("frontend")
    rec["restart"].append("frontend")
    port = sb.ports["frontend"]
    sb.spawn("frontend_not_html", [sb.python, "-m", "sandbox.helpers", "json", str(port)], cwd=sb.root)
    rec["procs"].append("frontend_not_html")
    sb.wait_tcp(port, "frontend_not_html")


@fault(
    "frontend_hang",
    "Vite stopped; a process accepts TCP on the frontend port and never answers.",
    fails=FRONTEND_DOWN,
    category="frontend",
)
def _frontend_hang(sb, rec):
    sb.stop_component("frontend")
    rec["restart"].append("frontend")
    port = sb.ports["frontend"]
    sb.spawn("frontend_hang", [sb.python, "-m", "sandbox.helpers", "hang", str(port)], cwd=sb.root)
    rec["procs"].append("frontend_hang")
    sb.wait_tcp(port, "frontend_hang")


@fault(
    "frontend_duplicate",
    "A second Vite dev server with the same cwd on another port.",
    fails={"test_frontend_dev_server_is_not_duplicated"},
    category="frontend",
)
def _frontend_dup(sb, rec):
    sb.spawn_frontend("frontend_duplicate", sb.free_port())
    rec["procs"].append("frontend_duplicate")


@fault(
    "node_modules_missing",
    "frontend/node_modules moved aside to the attic.",
    fails={
        "test_frontend_dependencies_are_installed",
        "test_frontend_typescript_compiles",
        "test_frontend_build_succeeds",
    },
    category="frontend",
)
def _nm_missing(sb, rec):
    sb.move_aside(sb.paths["frontend_dir"] / "node_modules", rec)


@fault(
    "npm_missing_dependency",
    "The declared dependency 'vite' removed from node_modules (npm ls fails).",
    # The build script runs vite (removed here) and tsc: the build fails with it.
    fails={"test_frontend_dependencies_are_installed", "test_frontend_build_succeeds"},
    category="frontend",
)
def _npm_missing(sb, rec):
    sb.move_aside(sb.paths["frontend_dir"] / "node_modules" / "vite", rec)


@fault(
    "ts_error",
    "A type error introduced in src/main.ts (tsc --noEmit fails).",
    fails={"test_frontend_typescript_compiles", "test_frontend_build_succeeds"},
    category="frontend",
)
def _ts_error(sb, rec):
    main = sb.paths["frontend_dir"] / "src" / "main.ts"
    sb.backup_file(main, rec)
    with open(main, "a") as f:
        f.write('\nexport const orderCount: number = "forty-two";\n')


@fault(
    "build_broken",
    "index.html references a missing module script: vite build fails, tsc passes.",
    fails={"test_frontend_build_succeeds"},
    category="frontend",
)
def _build_broken(sb, rec):
    index = sb.paths["frontend_dir"] / "index.html"
    sb.backup_file(index, rec)
    text = index.read_text()
    index.write_text(
        text.replace("</body>", '  <script type="module" src="/src/missing-entry.ts"></script>\n  </body>')
    )


# --- outside world ----------------------------------------------------------------------------


@fault(
    "workfossa_down",
    "WorkFossa stand-in process stopped (by pid).",
    fails={"test_workfossa_site_answers"},
    category="workfossa",
)
def _wf_down(sb, rec):
    sb.stop_component("workfossa")
    rec["restart"].append("workfossa")


@fault(
    "secret_in_bundle",
    "src/main.ts embeds the backend's JWT secret, so the served bundle leaks it.",
    fails={"test_frontend_bundle_contains_no_secret"},
    category="frontend",
)
def _secret_in_bundle(sb, rec):
    main = sb.paths["frontend_dir"] / "src" / "main.ts"
    sb.backup_file(main, rec)
    secret = logfmt_env(sb.paths["env_file"])["SECRET_KEY"]
    with open(main, "a", encoding="utf-8") as handle:
        handle.write(f'\nexport const SESSION_SIGNING_KEY = "{secret}";\n')


@fault(
    "browser_broken",
    "The deployment's Chromium (bin/chromium) replaced by a binary that cannot start.",
    fails={"test_headless_browser_launches"},
    category="browser",
)
def _browser_broken(sb, rec):
    browser = sb.paths["browser"]
    sb.move_aside(browser, rec)
    browser.write_text("#!/bin/sh\necho 'chromium: error while loading shared libraries: libnss3.so' >&2\nexit 127\n")
    browser.chmod(0o755)
    rec["created"].append(str(browser))


@fault(
    "browser_zombies",
    "6 orphaned headless chromium processes (parent exited); pids in run/zombies.pids.",
    fails={"test_browser_processes_are_under_maximum"},
    category="browser",
)
def _zombies(sb, rec):
    base = sb.attic_dir("browser_zombies")
    rec["created"].append(str(base))
    sb.spawn_zombies(6, base, rec)


# -1, not 0: the CPU check leaves out the suite's own load, so an idle host can measure exactly 0 %.
_threshold(
    "cpu_threshold",
    "Profile only: thresholds.cpu_percent = -1.",
    {"test_system_cpu_is_under_threshold"},
    cpu_percent=-1.0,
)
_threshold(
    "memory_threshold",
    "Profile only: thresholds.memory_percent = 0.",
    {"test_system_memory_is_under_threshold"},
    memory_percent=0.0,
)
_threshold(
    "disk_threshold",
    "Profile only: thresholds.disk_percent = 0.",
    {"test_disk_usage_is_under_threshold"},
    disk_percent=0.0,
)
_threshold(
    "process_memory_threshold",
    "Profile only: thresholds.process_memory_percent = 0.",
    {"test_backend_process_memory_is_under_threshold"},
    process_memory_percent=0.0,
)
_threshold(
    "db_size_threshold",
    "Profile only: thresholds.db_max_bytes = 1024.",
    {"test_database_file_is_under_size_limit"},
    db_max_bytes=1024,
)
_threshold(
    "large_table_threshold",
    "Profile only: thresholds.large_table_rows = 100.",
    {"test_database_tables_are_under_large_table_rows"},
    large_table_rows=100,
)
_threshold(
    "slow_query_threshold",
    "Profile only: thresholds.slow_query_seconds = 0.",
    {"test_database_counts_rows_quickly[work_orders]", "test_database_counts_rows_quickly[dispensers]"},
    slow_query_seconds=0.0,
)


def remove_tree(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink()
