"""Seeding of a fresh sandbox: database, .env, credentials, logs (stdlib only)."""

from __future__ import annotations

import base64
import hashlib
import os
import random
import secrets
import sqlite3
import string
from datetime import UTC, datetime, timedelta
from pathlib import Path

from . import logfmt

TEST_USER = "test@example.com"
PBKDF2_ITERATIONS = 60_000
SEED = 20261128
N_WORK_ORDERS = 1000
N_DISPENSERS = 3000


def user_id_for(email: str) -> str:
    return hashlib.md5(email.encode()).hexdigest()


def hash_password(password: str, salt: bytes | None = None) -> str:
    salt = salt or os.urandom(16)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, PBKDF2_ITERATIONS)
    return f"pbkdf2_sha256${PBKDF2_ITERATIONS}${salt.hex()}${digest.hex()}"


def verify_password(password: str, stored: str) -> bool:
    try:
        algo, iterations, salt, digest = stored.split("$")
    except ValueError:
        return False
    if algo != "pbkdf2_sha256":
        return False
    got = hashlib.pbkdf2_hmac("sha256", password.encode(), bytes.fromhex(salt), int(iterations))
    return secrets.compare_digest(got.hex(), digest)


def random_secret(n: int = 48) -> str:
    alphabet = string.ascii_letters + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(n))


def write_env(path: Path, values: dict[str, str]) -> None:
    path.write_text("".join(f"{k}={v}\n" for k, v in values.items()), encoding="utf-8")
    os.chmod(path, 0o600)


def read_env(path: Path) -> dict[str, str]:
    """KEY=VALUE lines of the backend's .env, quotes stripped (what the backend itself reads)."""
    out = {}
    try:
        for raw in path.read_text().splitlines():
            if "=" in raw and not raw.lstrip().startswith("#"):
                k, _, v = raw.partition("=")
                out[k.strip()] = v.strip().strip("'\"")
    except OSError:
        pass
    return out


def new_env(layout: str, password: str) -> dict[str, str]:
    """A fresh backend .env: the JWT secret, the test user's password and, in v2, the credentials' Fernet key."""
    values = {"SECRET_KEY": random_secret(48), "FOSSAWORK_TEST_PASSWORD": password}
    if layout == "v2":
        from cryptography.fernet import Fernet  # v2 only: the runbook layout keeps credentials in files

        values["FOSSAWORK_MASTER_KEY"] = Fernet.generate_key().decode()
    return values


SCHEMA_SQL = """
CREATE TABLE users (
    id TEXT PRIMARY KEY,
    email TEXT NOT NULL UNIQUE,
    username TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    is_active INTEGER NOT NULL DEFAULT 1,
    created_at TEXT NOT NULL
);
CREATE TABLE work_orders (
    id INTEGER PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users(id),
    external_id TEXT NOT NULL UNIQUE,
    site_name TEXT NOT NULL,
    address TEXT NOT NULL,
    service_code TEXT NOT NULL,
    status TEXT NOT NULL,
    scheduled_date TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX idx_work_orders_user ON work_orders(user_id);
CREATE INDEX idx_work_orders_status ON work_orders(status);
CREATE TABLE dispensers (
    id INTEGER PRIMARY KEY,
    work_order_id INTEGER NOT NULL REFERENCES work_orders(id),
    dispenser_number INTEGER NOT NULL,
    make TEXT NOT NULL,
    model TEXT NOT NULL,
    fuel_grades TEXT NOT NULL,
    serial_number TEXT NOT NULL
);
CREATE INDEX idx_dispensers_work_order ON dispensers(work_order_id);
"""

# APScheduler's SQLAlchemy job store: the only table the v2 backend creates itself (in a fresh file if need be).
SCHEDULER_SQL = """
CREATE TABLE IF NOT EXISTS apscheduler_jobs (
    id VARCHAR(191) NOT NULL PRIMARY KEY,
    next_run_time FLOAT,
    job_state BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS ix_apscheduler_jobs_next_run_time ON apscheduler_jobs (next_run_time);
"""

# FossaWork V2's own tables beside the runbook's: login bookkeeping, stored WorkFossa credentials, automation
# outcomes and the background scheduler's job store.
V2_SQL = (
    """
ALTER TABLE users ADD COLUMN last_used TEXT;
CREATE TABLE user_credentials (
    id INTEGER PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users(id),
    service_name TEXT NOT NULL,
    encrypted_username TEXT NOT NULL,
    encrypted_password TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT
);
CREATE UNIQUE INDEX idx_user_credentials_service ON user_credentials(user_id, service_name);
CREATE TABLE automation_jobs (
    id INTEGER PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users(id),
    job_type TEXT NOT NULL,
    status TEXT NOT NULL,
    error_message TEXT,
    created_at TEXT NOT NULL,
    completed_at TEXT
);
CREATE INDEX idx_automation_jobs_created ON automation_jobs(created_at);
"""
    + SCHEDULER_SQL
)

SITES = ["Wawa", "7-Eleven", "Circle K", "Speedway", "Sheetz", "QuikTrip", "Marathon", "Shell", "BP", "Sunoco"]
CITIES = ["Tampa", "Orlando", "Miami", "Jacksonville", "Ocala", "Gainesville", "Naples", "Sarasota"]
MAKES = [("Gilbarco", "Encore 700 S"), ("Wayne", "Ovation"), ("Gilbarco", "Encore 500"), ("Tokheim", "Quantium 510")]
STATUSES = ["pending", "scheduled", "in_progress", "completed", "completed", "completed"]
GRADES = ["Regular,Plus,Premium", "Regular,Premium,Diesel", "Regular,Plus,Premium,E85", "Diesel"]


def fake_blob(rng: random.Random, n: int = 96) -> str:
    return "gAAAAA" + base64.urlsafe_b64encode(bytes(rng.getrandbits(8) for _ in range(n))).decode()


def create_db(path: Path, layout: str, env: dict[str, str]) -> None:
    """The seeded database: deterministic in the runbook layout except for the password hash (rollback journal);
    in v2 also the credentials encrypted with the .env's Fernet key, recent automation jobs, and WAL mode."""
    rng = random.Random(SEED)
    uid = user_id_for(TEST_USER)
    conn = sqlite3.connect(path)
    try:
        conn.execute("PRAGMA journal_mode=DELETE")
        conn.executescript(SCHEMA_SQL)
        created = "2026-01-05T08:00:00"
        conn.execute(
            "INSERT INTO users VALUES (?,?,?,?,1,?)",
            (uid, TEST_USER, TEST_USER, hash_password(env["FOSSAWORK_TEST_PASSWORD"]), created),
        )
        other = user_id_for("tech2@example.com")
        conn.execute(
            "INSERT INTO users VALUES (?,?,?,?,1,?)",
            (other, "tech2@example.com", "tech2@example.com", hash_password(random_secret(24)), created),
        )
        orders = []
        for i in range(1, N_WORK_ORDERS + 1):
            site = rng.choice(SITES)
            orders.append(
                (
                    i,
                    uid if i % 10 else other,
                    f"W-{110000 + i}",
                    f"{site} #{rng.randint(100, 9999)}",
                    f"{rng.randint(1, 9999)} Main St, {rng.choice(CITIES)}, FL",
                    rng.choice(["2861", "2862", "3002", "3146"]),
                    rng.choice(STATUSES),
                    f"2026-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
                    created,
                )
            )
        conn.executemany("INSERT INTO work_orders VALUES (?,?,?,?,?,?,?,?,?)", orders)
        disps = []
        for i in range(1, N_DISPENSERS + 1):
            make, model = rng.choice(MAKES)
            disps.append(
                (
                    i,
                    (i - 1) // 3 + 1,
                    (i - 1) % 3 * 2 + 1,
                    make,
                    model,
                    rng.choice(GRADES),
                    f"SN{rng.randint(10**7, 10**8 - 1)}",
                )
            )
        conn.executemany("INSERT INTO dispensers VALUES (?,?,?,?,?,?,?)", disps)
        if layout == "v2":
            conn.executescript(V2_SQL)
            for user, email, password in (
                (uid, TEST_USER, env["FOSSAWORK_TEST_PASSWORD"]),
                (other, "tech2@example.com", random_secret(24)),
            ):
                store_credentials(conn, env["FOSSAWORK_MASTER_KEY"], user, email, password, created)
            end = logfmt.now() - timedelta(minutes=3)
            insert_automation_jobs(conn, automation_jobs(end, 20, {7}, timedelta(minutes=15), 1000))
        conn.commit()
        if layout == "v2":
            conn.execute("PRAGMA journal_mode=WAL")  # persistent: every later connection opens it in WAL mode
    finally:
        conn.close()
    os.chmod(path, 0o600)


def store_credentials(conn: sqlite3.Connection, key: str, user_id: str, username: str, password: str, when: str):
    """Encrypt (Fernet) and store one user's WorkFossa credentials, replacing the ones stored before (as v2's
    login does on every success)."""
    from cryptography.fernet import Fernet  # v2 only, and only in the processes that store credentials

    box = Fernet(key.encode())
    enc_user, enc_password = box.encrypt(username.encode()).decode(), box.encrypt(password.encode()).decode()
    conn.execute(
        "INSERT INTO user_credentials (user_id, service_name, encrypted_username, encrypted_password, created_at,"
        " updated_at) VALUES (?, 'workfossa', ?, ?, ?, ?) ON CONFLICT (user_id, service_name) DO UPDATE SET"
        " encrypted_username = excluded.encrypted_username, encrypted_password = excluded.encrypted_password,"
        " updated_at = excluded.updated_at",
        (user_id, enc_user, enc_password, when, when),
    )


def automation_jobs(
    end: datetime, n: int, failed: set[int], spacing: timedelta, first_id: int, reason: str = "Login form not found"
) -> list[tuple[int, datetime, bool, str]]:
    """``n`` automation jobs (id, finished at, ok, error), newest first, the newest at ``end``, one every
    ``spacing``; the k-th newest failed when k is in ``failed``."""
    return [(first_id + n - k, end - spacing * k, k not in failed, reason if k in failed else "") for k in range(n)]


def insert_automation_jobs(conn: sqlite3.Connection, jobs: list[tuple[int, datetime, bool, str]]) -> None:
    """The jobs as rows of automation_jobs, FossaWork V2's record of each outcome (times in UTC, no zone, as
    SQLAlchemy writes them)."""

    def utc(moment: datetime) -> str:
        return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")

    conn.executemany(
        "INSERT INTO automation_jobs (id, user_id, job_type, status, error_message, created_at, completed_at)"
        " VALUES (?, ?, 'form_automation', ?, ?, ?, ?)",
        [
            (
                job_id,
                user_id_for(TEST_USER),
                "completed" if ok else "failed",
                reason or None,
                utc(when - timedelta(minutes=2)),
                utc(when),
            )
            for job_id, when, ok, reason in jobs
        ],
    )


def create_credentials(cred_dir: Path) -> None:
    rng = random.Random(SEED + 1)
    cred_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(cred_dir, 0o700)
    for name in (f"{user_id_for(TEST_USER)}.enc", f"{user_id_for('tech2@example.com')}.enc"):
        f = cred_dir / name
        f.write_text(
            '{"version": 1, "algorithm": "fernet", "service": "workfossa", "data": "' + fake_blob(rng, 160) + '"}\n'
        )
        os.chmod(f, 0o600)


def seed_logs(log_dir: Path, layout: str) -> None:
    """Healthy logs: old backend errors only, a calm error log, ~20 automation attempts with one failure (runbook
    layout; FossaWork V2 keeps those as rows, and truncates today's files when its backend starts)."""
    t = logfmt.now()
    rng = random.Random(SEED + 2)
    for sub in ("backend", "errors", "automation") + (("frontend", "sessions") if layout == "v2" else ()):
        (log_dir / sub).mkdir(parents=True, exist_ok=True)
    # startup / general log
    general = []
    for hours in (30, 6, 0.05):
        when = t - timedelta(hours=hours)
        for msg in ("Starting FossaWork V2 backend", "Database connection established", "Application startup complete"):
            general.append((when, logfmt.line(layout, when, "INFO", "fossawork.main", msg, "startup:57")))
            when += timedelta(milliseconds=120)
    logfmt.write_lines(log_dir, layout, "general", general)
    # api log
    api = []
    for k in range(40):
        when = t - timedelta(minutes=5 * k + 1)
        path = rng.choice(["/api/work-orders", "/api/dispensers", "/api/health"])
        api.append(
            (
                when,
                logfmt.line(
                    layout,
                    when,
                    "INFO",
                    "fossawork.api",
                    f"API GET {path} -> 200 ({rng.uniform(5, 80):.2f}ms)",
                    "log_api_request:341",
                ),
            )
        )
    logfmt.write_lines(log_dir, layout, "api", api)
    # backend errors: a few, all older than 2 hours
    errs = []
    for hours in (2.5, 3.2, 5.0, 9.0, 26.0):
        when = t - timedelta(hours=hours)
        errs.append(
            (
                when,
                logfmt.line(
                    layout,
                    when,
                    "ERROR",
                    "fossawork.scraper",
                    "WorkFossa page load timeout after 30000ms (retrying)",
                    "scrape_work_orders:212",
                ),
            )
        )
    logfmt.write_lines(log_dir, layout, "backend_errors", errs)
    if layout == "runbook":
        # The runbook layout's errors log; FossaWork V2's stays empty (its errors are in the general log).
        errs2 = []
        for hours in (1.5, 4.0, 12.0):
            when = t - timedelta(hours=hours)
            errs2.append(
                (
                    when,
                    logfmt.line(
                        layout, when, "ERROR", "fossawork.api", "Request validation failed for /api/work-orders"
                    ),
                )
            )
        logfmt.write_lines(log_dir, layout, "errors", errs2)
        # automation: 20 attempts in the last ~5 hours, exactly one failure (v2 keeps them as rows: create_db)
        log_automation_jobs(log_dir, automation_jobs(t - timedelta(minutes=3), 20, {7}, timedelta(minutes=15), 1000))
    if layout == "v2":
        import json

        fe = []
        for k in range(5):
            when = t - timedelta(minutes=20 * k + 2)
            fe.append(
                (
                    when,
                    json.dumps(
                        {
                            "timestamp": when.isoformat(),
                            "level": "info",
                            "message": f"route change /work-orders ({k})",
                            "source": "frontend",
                        }
                    ),
                )
            )
        logfmt.write_lines(log_dir, layout, "frontend", fe)
        se = [
            (
                t - timedelta(minutes=30),
                json.dumps(
                    {"timestamp": (t - timedelta(minutes=30)).isoformat(), "event": "session_start", "user": TEST_USER}
                ),
            )
        ]
        logfmt.write_lines(log_dir, layout, "sessions", se)


def log_automation_jobs(log_dir: Path, jobs: list[tuple[int, datetime, bool, str]]) -> list[Path]:
    """The jobs as lines of the runbook layout's automation log; the files written."""
    entries = [(when, logfmt.automation_line(when, job_id, ok, reason)) for job_id, when, ok, reason in jobs]
    return logfmt.write_lines(log_dir, "runbook", "automation", entries)
