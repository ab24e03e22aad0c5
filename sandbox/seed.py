"""Seeding of a fresh sandbox: database, .env, credentials, logs (stdlib only)."""

from __future__ import annotations

import base64
import hashlib
import os
import random
import secrets
import sqlite3
import string
from datetime import timedelta
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


def write_env(path: Path, secret_key: str, password: str) -> None:
    path.write_text(f"SECRET_KEY={secret_key}\nFOSSAWORK_TEST_PASSWORD={password}\n", encoding="utf-8")
    os.chmod(path, 0o600)


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

CREDENTIALS_SQL = """
CREATE TABLE user_credentials (
    id INTEGER PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users(id),
    service_name TEXT NOT NULL,
    encrypted_username TEXT NOT NULL,
    encrypted_password TEXT NOT NULL,
    created_at TEXT NOT NULL
);
"""

SITES = ["Wawa", "7-Eleven", "Circle K", "Speedway", "Sheetz", "QuikTrip", "Marathon", "Shell", "BP", "Sunoco"]
CITIES = ["Tampa", "Orlando", "Miami", "Jacksonville", "Ocala", "Gainesville", "Naples", "Sarasota"]
MAKES = [("Gilbarco", "Encore 700 S"), ("Wayne", "Ovation"), ("Gilbarco", "Encore 500"), ("Tokheim", "Quantium 510")]
STATUSES = ["pending", "scheduled", "in_progress", "completed", "completed", "completed"]
GRADES = ["Regular,Plus,Premium", "Regular,Premium,Diesel", "Regular,Plus,Premium,E85", "Diesel"]


def fake_blob(rng: random.Random, n: int = 96) -> str:
    return "gAAAAA" + base64.urlsafe_b64encode(bytes(rng.getrandbits(8) for _ in range(n))).decode()


def create_db(path: Path, layout: str, password: str) -> None:
    """The seeded database, deterministic except for the password hash (rollback journal)."""
    rng = random.Random(SEED)
    uid = user_id_for(TEST_USER)
    conn = sqlite3.connect(path)
    try:
        conn.execute("PRAGMA journal_mode=DELETE")
        conn.executescript(SCHEMA_SQL)
        if layout == "v2":
            conn.executescript(CREDENTIALS_SQL)
        created = "2026-01-05T08:00:00"
        conn.execute(
            "INSERT INTO users VALUES (?,?,?,?,1,?)", (uid, TEST_USER, TEST_USER, hash_password(password), created)
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
            conn.executemany(
                "INSERT INTO user_credentials VALUES (?,?,?,?,?,?)",
                [
                    (1, uid, "workfossa", fake_blob(rng, 32), fake_blob(rng), created),
                    (2, other, "workfossa", fake_blob(rng, 32), fake_blob(rng), created),
                ],
            )
        conn.commit()
    finally:
        conn.close()
    os.chmod(path, 0o600)


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
    """Healthy logs: old backend errors only, a calm error log, ~20 automation attempts with one failure."""
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
    if FILES_HAS_ERRORS(layout):
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
    # automation: 20 attempts in the last ~5 hours, exactly one failure
    auto = []
    for k in range(20):
        when = t - timedelta(minutes=15 * k + 3)
        ok = k != 7
        auto.append(
            (when, logfmt.automation_line(layout, when, 1000 + (20 - k), ok, "" if ok else "Login form not found"))
        )
    logfmt.write_lines(log_dir, layout, "automation", auto)
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


def FILES_HAS_ERRORS(layout: str) -> bool:
    return logfmt.FILES[layout]["errors"] is not None
