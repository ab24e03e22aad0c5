"""The fault catalogue: each fault is a real defect injected into a running sandbox and undone exactly, declared
with the health checks it must fail (and no other), per layout.

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

from . import logfmt, seed
from .seed import random_secret


class SandboxError(Exception):
    """Anything the sandbox cannot do; str() is one line."""


@dataclass(frozen=True)
class Fault:
    """A defect the sandbox can inject, and the checks it must fail: ``fails`` in every layout unless
    ``fails_v2`` says what FossaWork V2 as deployed makes of it."""

    description: str
    layouts: tuple[str, ...] = ("runbook", "v2")
    inject: Callable | None = field(default=None, repr=False, compare=False)
    thresholds: dict | None = None
    category: str = ""
    fails: frozenset[str] = frozenset()
    fails_v2: frozenset[str] | None = None

    def must_fail(self, layout: str) -> frozenset[str]:
        """The checks this fault must fail in ``layout``, and no other."""
        return self.fails_v2 if layout == "v2" and self.fails_v2 is not None else self.fails


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
# The login route is asked with an empty body, refused (422) before the handler reads a user, asks WorkFossa or
# opens the database: while either is broken the route is there, and only the test user's login fails.
TEST_USER_LOGIN_FAILS = frozenset({"test_login_with_test_user_succeeds"})
# FossaWork V2 serves dispensers inside the work-order list, so its profile names that route for both.
WORK_ORDER_ROUTE_V2 = frozenset(
    {"test_api_endpoint_answers_200_with_json[work_orders]", "test_api_endpoint_answers_200_with_json[dispensers]"}
)


def _without_database(*checks: str, v2_also: Iterable[str] = ()) -> dict:
    """What a fault that breaks the database fails besides ``checks``: the test user's login, which reads the
    user (and in v2 writes the login) there; the health route, which answers 200 without looking (as deployed);
    ``v2_also``: more in v2, whose stored credentials are in the database."""
    fails = TEST_USER_LOGIN_FAILS | {*checks, "test_health_endpoint_sees_the_database"}
    return {"fails": fails, "fails_v2": fails | set(v2_also)}


def _register(name: str, fault: Fault) -> None:
    FAULTS[name] = fault


def fault(
    name: str,
    description: str,
    fails: Iterable[str],
    fails_v2: Iterable[str] | None = None,
    layouts=("runbook", "v2"),
    category="",
):
    """Register the decorated inject function as fault ``name``."""

    def register(fn):
        _register(
            name,
            Fault(
                description,
                tuple(layouts),
                fn,
                None,
                category,
                frozenset(fails),
                None if fails_v2 is None else frozenset(fails_v2),
            ),
        )
        return fn

    return register


def _flag(name: str, description: str, category: str, fails: Iterable[str]) -> None:
    def inject(sb, rec):
        sb.flag(name, rec)

    _register(name, Fault(description, ("runbook", "v2"), inject, None, category, frozenset(fails)))


def _threshold(name: str, description: str, fails: Iterable[str], **values) -> None:
    _register(name, Fault(description, ("runbook", "v2"), None, values, "threshold", frozenset(fails)))


# --- backend process --------------------------------------------------------------------------


@fault("backend_down", "Backend uvicorn process stopped (by pid).", BACKEND_DOWN, category="backend")
def _backend_down(sb, rec):
    sb.stop_component("backend")
    rec["restart"].append("backend")


@fault(
    "backend_duplicate",
    "A second uvicorn backend process with the same cwd on another port.",
    {"test_backend_process_is_not_duplicated"},
    category="backend",
)
def _backend_duplicate(sb, rec):
    sb.spawn_backend("backend_duplicate", sb.free_port())
    rec["procs"].append("backend_duplicate")


@fault(
    "port_taken",
    "Backend stopped and a non-uvicorn process (python -m http.server) listens on the API port.",
    BACKEND_DOWN | {"test_api_port_is_held_by_the_backend"},
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
    {"test_backend_process_cpu_is_under_threshold"},
    category="backend",
)
def _cpu_burn(sb, rec):
    sb.flag("backend_cpu_burn", rec)


@fault(
    "api_500",
    "The running backend's dispenser serializer fails: the route serving dispensers answers 500 until the process"
    " is restarted (runbook: /api/dispensers; v2: the work-order list, which carries the dispensers).",
    {"test_api_endpoint_answers_200_with_json[dispensers]"},
    fails_v2=WORK_ORDER_ROUTE_V2,
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
_flag(
    "validate_accepts_any",
    "The token validation route answers 200 to any token, even none.",
    "auth",
    # Any token: one signed with a published secret too.
    BAD_TOKENS | {"test_tokens_signed_with_default_secrets_are_refused"},
)
_flag(
    "alg_none_accepted",
    "Tokens signed with alg 'none' are accepted by validation and the protected routes.",
    "auth",
    {"test_validate_rejects_bad_token[alg_none]"},
)
_flag("login_500", "Login answers 500.", "auth", LOGIN_DOWN)
_flag(
    "alg_confusion_accepted",
    "Validation accepts a token claiming RS256 but HMAC-signed with the secret.",
    "auth",
    {"test_validate_rejects_bad_token[alg_confusion]"},
)
_flag(
    "auth_routes_missing",
    "Token validation and logout answer 404 (their router is not mounted).",
    "auth",
    {"test_auth_route_exists[validate]", "test_auth_route_exists[logout]", "test_token_from_login_validates"},
)
_flag(
    "validate_rejects_valid",
    "Token validation answers 401 even to a fresh token from login.",
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
_flag(
    "cors_reflects_origin",
    "401 answers echo any request Origin in Access-Control-Allow-Origin with Allow-Credentials: true.",
    "security",
    {"test_api_does_not_allow_any_origin_with_credentials"},
)
_flag(
    "cors_preflight_reflects_origin",
    "Preflights (OPTIONS with Access-Control-Request-Method) from any Origin are answered with that Origin and"
    " Allow-Credentials: true, as a CORS middleware allowing '*' with credentials does.",
    "security",
    {"test_api_does_not_allow_any_origin_with_credentials"},
)


def _rewrite_env(sb, rec, **values: str) -> None:
    """Set keys of the backend's .env (in place: its owner and mode stay) and restart the backend to read them."""
    env = sb.paths["env_file"]
    sb.backup_file(env, rec)
    text = "".join(f"{k}={v}\n" for k, v in {**seed.read_env(env), **values}.items())
    with open(env, "w", encoding="utf-8") as handle:
        handle.write(text)
    sb.restart_component("backend")
    rec["restart"].append("backend")


@fault(
    "jwt_short_secret",
    "Backend restarted with a 16-character JWT secret (.env updated).",
    {"test_jwt_secret_is_at_least_32_characters"},
    category="auth",
)
def _jwt_short(sb, rec):
    _rewrite_env(sb, rec, SECRET_KEY=random_secret(16))


DEFAULT_SECRET = "your-secret-key-here-change-in-production-please"


@fault(
    "jwt_default_secret",
    f"Backend restarted with the well-known example secret {DEFAULT_SECRET!r}.",
    {"test_jwt_secret_is_not_a_known_default", "test_tokens_signed_with_default_secrets_are_refused"},
    category="auth",
)
def _jwt_default(sb, rec):
    _rewrite_env(sb, rec, SECRET_KEY=DEFAULT_SECRET)


# Not the one-word example: registered for redaction once accepted, it would mask that word in every check name.
PROCESS_ENV_SECRET = "changeme"


@fault(
    "weak_secret_in_process_env",
    f"Backend restarted with SECRET_KEY={PROCESS_ENV_SECRET} in its service environment (a drop-in of the service"
    " manager) while its .env keeps the strong secret: the environment wins, and the suite reads the .env.",
    {"test_tokens_signed_with_default_secrets_are_refused"},
    category="auth",
)
def _weak_secret_in_process_env(sb, rec):
    drop_in = sb.paths["backend_environment"]
    drop_in.write_text(f"SECRET_KEY={PROCESS_ENV_SECRET}\n")
    rec["created"].append(str(drop_in))
    sb.restart_component("backend")
    rec["restart"].append("backend")


@fault(
    "dev_mode_login",
    "Backend restarted with WORKFOSSA_DEV_MODE=true (.env updated): login accepts, and stores, any password.",
    {"test_login_rejects_wrong_password"},
    layouts=("v2",),
    category="auth",
)
def _dev_mode(sb, rec):
    _rewrite_env(sb, rec, WORKFOSSA_DEV_MODE="true")


# --- database ---------------------------------------------------------------------------------


@fault(
    "db_missing",
    "Database file moved aside to the attic.",
    **_without_database("test_database_file_exists"),
    category="database",
)
def _db_missing(sb, rec):
    sb.move_database_aside(rec)


def _replace_db(sb, rec) -> Path:
    """Move the database aside for a file the fault writes in its place (the backend's, as a deploy leaves it)."""
    sb.move_database_aside(rec)
    db = sb.paths["db"]
    rec["created"].append(str(db))
    return db


def _replaced(sb, db: Path) -> None:
    os.chmod(db, 0o600)
    sb.give_to_backend(db)


@fault(
    "db_empty",
    "Database replaced by a zero-byte file.",
    **_without_database("test_database_file_is_not_empty", v2_also={"test_credential_store_holds_credentials"}),
    category="database",
)
def _db_empty(sb, rec):
    db = _replace_db(sb, rec)
    db.touch()
    _replaced(sb, db)


@fault(
    "db_not_a_database",
    "Database replaced by a text file.",
    **_without_database(
        "test_database_is_a_readable_sqlite_database",
        "test_backend_error_log_has_no_critical_error_pattern[DatabaseError]",
    ),
    category="database",
)
def _db_text(sb, rec):
    db = _replace_db(sb, rec)
    db.write_text("This is not a database: it is a text file left here by a broken deploy.\n" * 40)
    _replaced(sb, db)


@fault(
    "db_no_tables",
    "Database replaced by a valid SQLite file with no tables.",
    **_without_database("test_database_has_expected_tables", v2_also={"test_credential_store_holds_credentials"}),
    category="database",
)
def _db_no_tables(sb, rec):
    db = _replace_db(sb, rec)
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA user_version = 1")
    conn.commit()
    conn.close()
    _replaced(sb, db)


@fault(
    "db_corrupt",
    "Garbage written over b-tree pages of work_orders (header intact; integrity_check fails).",
    {
        "test_database_passes_quick_check",
        "test_database_passes_integrity_check",
        "test_database_foreign_keys_are_consistent",
        "test_api_endpoint_answers_200_with_json[work_orders]",
        "test_backend_error_log_has_no_critical_error_pattern[DatabaseError]",
    },
    # v2's dispensers come with the work orders, so the broken pages break that one route for both.
    fails_v2=WORK_ORDER_ROUTE_V2
    | {
        "test_database_passes_quick_check",
        "test_database_passes_integrity_check",
        "test_database_foreign_keys_are_consistent",
        "test_backend_error_log_has_no_critical_error_pattern[DatabaseError]",
    },
    category="database",
)
def _db_corrupt(sb, rec):
    db = sb.paths["db"]
    sb.backup_database(rec)
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
    {"test_database_foreign_keys_are_consistent"},
    category="database",
)
def _db_fk(sb, rec):
    sb.backup_database(rec)
    conn = sqlite3.connect(sb.paths["db"])
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
    # The application cannot log anyone in while the database is locked (v2: its login writes); a locked database
    # is not a broken one, so the health route's 200 is no finding here.
    TEST_USER_LOGIN_FAILS | {"test_database_is_not_locked"},
    TEST_USER_LOGIN_FAILS | {"test_database_is_not_locked"},
    category="database",
)
def _db_locked(sb, rec):
    sb.spawn("dblock", [sb.python, "-m", "sandbox.helpers", "dblock", str(sb.paths["db"])], cwd=sb.root)
    rec["procs"].append("dblock")
    sb.wait_output("dblock", "locked")


@fault(
    "db_bloated",
    "Free pages > 10 % of the file (a big blob table inserted, then dropped).",
    {"test_database_free_pages_are_under_ratio"},
    category="database",
)
def _db_bloated(sb, rec):
    sb.backup_database(rec)
    conn = sqlite3.connect(sb.paths["db"])
    conn.execute("CREATE TABLE bloat (data BLOB)")
    conn.executemany("INSERT INTO bloat VALUES (randomblob(16000))", [()] * 600)
    conn.commit()
    conn.execute("DROP TABLE bloat")
    conn.commit()
    conn.close()


def sidecars_of(db: Path) -> list[Path]:
    return [db.with_name(db.name + suffix) for suffix in ("-wal", "-shm", "-journal")]


def _chmod(path_key: str, mode: int):
    def inject(sb, rec):
        sb.chmod(sb.paths[path_key], mode, rec)

    return inject


_register(
    "db_unreadable",
    Fault(
        "Database file chmod 0200: its owner (the service) cannot read it.",
        inject=_chmod("db", 0o200),
        category="database",
        fails=frozenset({"test_database_file_is_readable"}),
        # v2's backend runs as the file's owner, not as root: it cannot read the file either, and logins need it.
        fails_v2=TEST_USER_LOGIN_FAILS | {"test_database_file_is_readable"},
    ),
)


def _db_unwritable(sb, rec):
    # The backend, refused writes, may create its -wal/-shm with the file's 0400 and keep them open: clear
    # gives them the restored file's mode back and restarts it, or every later login stays refused.
    mode = os.stat(sb.paths["db"]).st_mode & 0o7777
    sb.chmod(sb.paths["db"], 0o400, rec)
    rec["modes"] += [[str(side), mode] for side in sidecars_of(sb.paths["db"])]
    rec["restart"].append("backend")


_register(
    "db_unwritable",
    Fault(
        "Database file chmod 0400: its owner (the service) cannot write it.",
        inject=_db_unwritable,
        category="database",
        fails=frozenset({"test_database_file_is_writable"}),
        # Every v2 login writes (last-used time, credentials), as the file's owner: no login succeeds.
        fails_v2=TEST_USER_LOGIN_FAILS | {"test_database_file_is_writable"},
    ),
)


def _owned_by_root(sb, rec, *paths: Path) -> None:
    """What a fix run as root used to leave behind: files the backend's own user can no longer write."""
    if not sb.backend_user.get("dedicated"):
        raise SandboxError("the backend runs as the suite's user here: a root-owned file is still its own")
    for path in paths:
        sb.chown(path, 0, 0, rec)


@fault(
    "db_owned_by_root",
    "Database file chown root:root (mode kept): the backend's own user cannot write it, as after a root restore.",
    fails={"test_database_file_is_writable"},
    # Every v2 login writes (last-used time, credentials): none succeeds.
    fails_v2=TEST_USER_LOGIN_FAILS | {"test_database_file_is_writable"},
    layouts=("v2",),
    category="database",
)
def _db_owned_by_root(sb, rec):
    _owned_by_root(sb, rec, sb.paths["db"])
    # SQLite falls back to a read-only connection the backend keeps: only a restart writes again.
    rec["restart"].append("backend")


@fault(
    "log_owned_by_root",
    "Today's general log and its directory chown root:root: the backend cannot reopen them at its next start.",
    fails={"test_logs_are_writable_by_the_service_user"},
    layouts=("v2",),
    category="logs",
)
def _log_owned_by_root(sb, rec):
    log = logfmt.log_path(sb.paths["log_dir"], "v2", "general")
    _owned_by_root(sb, rec, log, log.parent)


_register(
    "db_world_readable",
    Fault(
        "Database file chmod 0644 (healthy: 0600).",
        inject=_chmod("db", 0o644),
        category="security",
        fails=frozenset({"test_secret_files_are_not_readable_by_others"}),
    ),
)
_register(
    "env_world_readable",
    Fault(
        "backend/.env chmod 0644 (healthy: 0600).",
        inject=_chmod("env_file", 0o644),
        category="security",
        fails=frozenset({"test_secret_files_are_not_readable_by_others"}),
    ),
)


@fault(
    "disk_nearly_full",
    "The filesystem holding the database (the sandbox's tmpfs, root only) over 90 % full: old uncompressed"
    " debug logs in the log directory and a database backup.",
    {"test_database_filesystem_has_ten_percent_free"},
    category="database",
)
def _disk_nearly_full(sb, rec):
    data_fs = sb.state.get("data_fs") or {}
    if data_fs.get("type") != "tmpfs":
        raise SandboxError(
            f"disk_nearly_full fills the sandbox's own tmpfs, which this sandbox lacks ({data_fs.get('why', '?')})"
        )
    data = sb.paths["data"]
    backup = sb.paths["backup_dir"] / "fossawork_v2-before-upgrade.db"
    shutil.copy2(sb.paths["db"], backup)
    rec["created"].append(str(backup))
    st = os.statvfs(data)
    # To 95 % used: days of debug logs nobody rotated, each well under log_max_bytes (so no single file is
    # "oversized") and highly compressible, so rotating and gzipping them frees nearly all of it.
    missing = int(st.f_blocks * 0.95) - (st.f_blocks - st.f_bavail)
    left, day = missing * st.f_frsize, 1
    while left > 0:
        when = logfmt.now() - timedelta(days=day)
        path = sb.paths["log_dir"] / "backend" / f"backend-debug-{when.astimezone():%Y-%m-%d}.jsonl"
        size = min(left, 24 * 1024 * 1024)
        rec["created"].append(str(path))
        _write_log(path, logfmt.line(sb.layout, when, "DEBUG", "fossawork.scraper", "DOM snapshot " + "x" * 180), size)
        logfmt.set_mtime(path, when)
        sb.give_to_backend(path)
        left, day = left - size, day + 1
    st = os.statvfs(data)
    if st.f_bavail >= st.f_blocks * 0.10:
        raise SandboxError(f"disk_nearly_full left {st.f_bavail / st.f_blocks:.0%} of {data} free, expected < 10 %")


def _write_log(path: Path, line: str, size: int) -> None:
    """A log file of ``size`` bytes at most (whole lines, less than one line short), one line over and over."""
    block = ((line + "\n") * (1024 * 1024 // (len(line) + 1) + 1)).encode()[: 1024 * 1024]
    block = block[: block.rfind(b"\n") + 1]
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        for _ in range(size // len(block)):
            f.write(block)
        rest = block[: size % len(block)]
        f.write(rest[: rest.rfind(b"\n") + 1])


# --- credentials ------------------------------------------------------------------------------


@fault(
    "credentials_missing",
    "Stored WorkFossa credentials gone (runbook: dir moved aside; v2: rows moved to a side table).",
    {"test_credential_store_holds_credentials"},
    category="credentials",
)
def _cred_missing(sb, rec):
    if sb.layout == "runbook":
        sb.move_aside(sb.paths["credentials_dir"], rec)
        return
    sb.backup_database(rec)  # clear restores the exact file
    conn = sqlite3.connect(sb.paths["db"])
    conn.execute("CREATE TABLE user_credentials_quarantine AS SELECT * FROM user_credentials")
    conn.execute("DELETE FROM user_credentials")
    conn.commit()
    conn.close()


@fault(
    "credentials_world_readable",
    "Credentials dir 0755 and files 0644 (healthy: 0700 / 0600).",
    {"test_secret_files_are_not_readable_by_others"},
    layouts=("runbook",),
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
    "60 error lines in the last hour (runbook: a new file under logs/errors; v2: its general log, where it writes"
    " every error).",
    {"test_error_logs_hold_few_errors_in_the_last_hour"},
    # v2's general log is its backend error log too: 60 errors there are also too many recent backend errors.
    fails_v2={"test_error_logs_hold_few_errors_in_the_last_hour", "test_backend_error_log_has_few_recent_errors"},
    category="logs",
)
def _error_burst(sb, rec):
    t = logfmt.now()
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
    lines.reverse()
    if sb.layout == "v2":
        sb.append_lines(logfmt.log_path(sb.paths["log_dir"], "v2", "backend_errors", t), lines, rec)
        return
    path = sb.paths["log_dir"] / "errors" / "integration-errors.jsonl"
    logfmt.append(path, lines)
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
    "8 recent errors appended to the backend error log only (v2: its general log).",
    {"test_backend_error_log_has_few_recent_errors"},
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
    {
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
    "runbook: a recent ModuleNotFoundError (ImportError) line in the startup log; v2: the deployed code imports a"
    " module that is not there, so the restarted backend dies at import with the traceback in its journal.",
    {"test_backend_logs_show_no_import_errors"},
    # As deployed, an import error is a backend that does not start; its traceback goes to stderr only.
    fails_v2=BACKEND_DOWN | {"test_backend_logs_show_no_import_errors"},
    category="logs",
)
def _import_error(sb, rec):
    if sb.layout == "runbook":
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
        return
    main = sb.paths["backend_dir"] / "app" / "main.py"
    sb.backup_file(main, rec)
    with open(main, "a", encoding="utf-8") as handle:
        handle.write("\nfrom app.routes import automation  # a router the deploy did not ship\n")
    rec["restart"].append("backend")
    sb.restart_component("backend", wait=False)
    sb.wait_exit("backend")
    journal = sb.paths["backend_journal"].read_text(errors="replace")
    if "ModuleNotFoundError" not in journal:
        raise SandboxError(f"the backend did not die of the import error: {journal.strip().splitlines()[-1:]}")


@fault(
    "backend_log_missing",
    "Backend error log file(s) moved aside to the attic (v2: the general log, which it keeps writing to).",
    {"test_backend_error_log_exists"},
    # In v2 the general log is in every active group (errors/ beside it is empty when all is well): all fall silent.
    fails_v2={"test_backend_error_log_exists", "test_active_logs_have_entries_in_their_window"},
    category="logs",
)
def _backend_log_missing(sb, rec):
    log_dir = sb.paths["log_dir"]
    for pattern in logfmt.GLOBS[sb.layout]["backend_errors"]:
        for f in sorted(log_dir.glob(pattern)):
            sb.move_aside(f, rec)


@fault(
    "log_rotated_without_reopen",
    "logrotate without copytruncate: the general log renamed to .1 and an empty one created in its place, with its"
    " owner and mode; the backend keeps writing to the renamed file, as it opens its logs only when it starts.",
    {"test_active_logs_have_entries_in_their_window"},
    layouts=("v2",),
    category="logs",
)
def _log_rotated_without_reopen(sb, rec):
    log_dir = sb.paths["log_dir"]
    for pattern in logfmt.GLOBS["v2"]["backend_errors"]:
        for log in sorted(log_dir.glob(pattern)):
            rotated = log.with_name(log.name + ".1")
            mode = log.stat().st_mode & 0o7777
            log.rename(rotated)
            # Cleared as a file moved aside: what lands in the new file meanwhile is kept after the rotated lines.
            rec["moved"].append([str(log), str(rotated)])
            log.touch()
            log.chmod(mode)
            sb.give_to_backend(log)


@fault(
    "log_oversized",
    "A 101 MiB log file of log lines under logs/backend.",
    {"test_log_files_are_under_size_limit"},
    category="logs",
)
def _log_oversized(sb, rec):
    t = logfmt.now() - timedelta(hours=3)
    path = sb.paths["log_dir"] / "backend" / "backend-debug.jsonl"
    rec["created"].append(str(path))
    line = logfmt.line(sb.layout, t, "DEBUG", "fossawork.scraper", "DOM snapshot chunk " + "x" * 180, "dump_dom:52")
    _write_log(path, line, 101 * 1024 * 1024)
    sb.give_to_backend(path)  # the application wrote it: a root-owned log would be another fault


def _automation(sb, rec, n: int, failed: int, age: timedelta, spacing_min: int) -> None:
    t = logfmt.now() - age
    fail_at = {round(i * n / failed) for i in range(failed)} if failed else set()
    jobs = seed.automation_jobs(
        t - timedelta(minutes=2), n, fail_at, timedelta(minutes=spacing_min), 5000, "Timeout waiting for selector"
    )
    if sb.layout == "v2":
        # FossaWork V2 records outcomes as automation_jobs rows: these replace the recent ones.
        sb.backup_database(rec)
        conn = sqlite3.connect(sb.paths["db"])
        try:
            with conn:
                conn.execute("DELETE FROM automation_jobs")
                seed.insert_automation_jobs(conn, jobs)
        finally:
            conn.close()
        return
    for f in sorted((sb.paths["log_dir"] / "automation").glob("*.jsonl")):
        sb.move_aside(f, rec)
    for path in seed.log_automation_jobs(sb.paths["log_dir"], jobs):
        rec["created"].append(str(path))
        if age:
            logfmt.set_mtime(path, t)


@fault(
    "automation_failure_30",
    "Recent automation attempts ~30 % failed (6 of 20; v2: automation_jobs rows).",
    {"test_automation_failure_rate_is_under_threshold"},
    category="automation",
)
def _auto30(sb, rec):
    _automation(sb, rec, 20, 6, timedelta(0), 8)


@fault(
    "automation_failure_60",
    "Recent automation attempts ~60 % failed (12 of 20; v2: automation_jobs rows).",
    {"test_automation_failure_rate_is_under_threshold", "test_automation_failure_rate_is_not_critical"},
    category="automation",
)
def _auto60(sb, rec):
    _automation(sb, rec, 20, 12, timedelta(0), 8)


@fault(
    "automation_logs_stale",
    "Newest automation entries (v2: automation_jobs rows) are 3 days old; the recent ones are moved aside.",
    {"test_automation_logs_are_recent"},
    category="automation",
)
def _auto_stale(sb, rec):
    _automation(sb, rec, 20, 1, timedelta(days=3), 15)


# --- frontend ---------------------------------------------------------------------------------


@fault("frontend_down", "Vite dev server stopped (by pid).", FRONTEND_DOWN, category="frontend")
def _frontend_down(sb, rec):
    sb.stop_component("frontend")
    rec["restart"].append("frontend")


@fault(
    "frontend_not_html",
    "Vite stopped; a process answers 200 application/json on the frontend port.",
    FRONTEND_DOWN,
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
    FRONTEND_DOWN,
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
    {"test_frontend_dev_server_is_not_duplicated"},
    category="frontend",
)
def _frontend_dup(sb, rec):
    sb.spawn_frontend("frontend_duplicate", sb.free_port())
    rec["procs"].append("frontend_duplicate")


@fault(
    "node_modules_missing",
    "frontend/node_modules moved aside to the attic.",
    {"test_frontend_dependencies_are_installed", "test_frontend_typescript_compiles", "test_frontend_build_succeeds"},
    category="frontend",
)
def _nm_missing(sb, rec):
    sb.move_aside(sb.paths["frontend_dir"] / "node_modules", rec)


@fault(
    "npm_missing_dependency",
    "The declared dependency 'vite' removed from node_modules (npm ls fails).",
    # The build script runs vite (removed here) and tsc: the build fails with it.
    {"test_frontend_dependencies_are_installed", "test_frontend_build_succeeds"},
    category="frontend",
)
def _npm_missing(sb, rec):
    sb.move_aside(sb.paths["frontend_dir"] / "node_modules" / "vite", rec)


@fault(
    "ts_error",
    "A type error introduced in src/main.ts (tsc --noEmit fails).",
    {"test_frontend_typescript_compiles", "test_frontend_build_succeeds"},
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
    {"test_frontend_build_succeeds"},
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
    {"test_workfossa_site_answers"},
    # v2 checks every login's password on WorkFossa: without it nobody logs in.
    fails_v2=TEST_USER_LOGIN_FAILS | {"test_workfossa_site_answers"},
    category="workfossa",
)
def _wf_down(sb, rec):
    sb.stop_component("workfossa")
    rec["restart"].append("workfossa")


@fault(
    "secret_in_bundle",
    "src/main.ts embeds the backend's JWT secret, so the served bundle leaks it.",
    {"test_frontend_bundle_contains_no_secret"},
    category="frontend",
)
def _secret_in_bundle(sb, rec):
    main = sb.paths["frontend_dir"] / "src" / "main.ts"
    sb.backup_file(main, rec)
    secret = seed.read_env(sb.paths["env_file"])["SECRET_KEY"]
    with open(main, "a", encoding="utf-8") as handle:
        handle.write(f'\nexport const SESSION_SIGNING_KEY = "{secret}";\n')


@fault(
    "browser_broken",
    "The deployment's Chromium (bin/chromium) replaced by a binary that cannot start.",
    {"test_headless_browser_launches"},
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
    {"test_browser_processes_are_under_maximum"},
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
