"""The sandbox's FossaWork V2 backend: a real FastAPI app over the real SQLite file.

Copied into the sandbox's backend folder as the package ``app`` (with logfmt and seed) and started from there
as ``python -m uvicorn app.main:app``, as FossaWork V2 is deployed; it never imports the project. Configuration
comes from the environment (FOSSA_SANDBOX_*) and the backend's .env; faults are flag files in
FOSSA_SANDBOX_FAULT_DIR, read per request, so most faults need no restart.

The v2 layout behaves as FossaWork V2 does when deployed (see /health, login, the logs and the scheduler below);
the runbook layout as the runbook pictures it.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import os
import sqlite3
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import warnings
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jwt
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from . import logfmt
from .seed import SCHEDULER_SQL, read_env, store_credentials, verify_password

warnings.filterwarnings("ignore", module="jwt")

ROOT = Path(os.environ.get("FOSSA_SANDBOX_ROOT", "."))
LAYOUT = os.environ.get("FOSSA_SANDBOX_LAYOUT", "runbook")
V2 = LAYOUT == "v2"
DB_PATH = os.environ.get("FOSSA_SANDBOX_DB", str(ROOT / "backend" / "fossawork_v2.db"))
LOG_DIR = Path(os.environ.get("FOSSA_SANDBOX_LOG_DIR", str(ROOT / "logs")))
FAULT_DIR = Path(os.environ.get("FOSSA_SANDBOX_FAULT_DIR", str(ROOT / "faults")))
ENV_FILE = Path(os.environ.get("FOSSA_SANDBOX_ENV_FILE", ".env"))
WORKFOSSA_URL = os.environ.get("FOSSA_SANDBOX_WORKFOSSA_URL", "")
TOKEN_MINUTES = 30
PAGE = 100
WORKFOSSA_TIMEOUT = 30.0  # the deployed login gives its browser 30 s

ENV = read_env(ENV_FILE)


def setting(name: str) -> str:
    """A setting from the process environment, else the .env: the environment wins, as with pydantic-settings
    and python-dotenv's load_dotenv (which never overrides a variable already set)."""
    return os.environ.get(name) or ENV.get(name, "")


SECRET_KEY = setting("SECRET_KEY")
if not SECRET_KEY:
    raise SystemExit("SECRET_KEY missing from the environment and the .env file")
# Development mode accepts any password at login (and stores it); production checks it on WorkFossa.
DEV_MODE = setting("WORKFOSSA_DEV_MODE").lower() == "true"
MASTER_KEY = ENV.get("FOSSAWORK_MASTER_KEY", "")
if V2 and not MASTER_KEY:
    raise SystemExit("FOSSAWORK_MASTER_KEY missing from the .env file")

if V2:
    HEALTH, WORK_ORDERS, DISPENSERS, VALIDATE = "/health", "/api/v1/work-orders/", None, "/api/auth/me"
else:
    HEALTH, WORK_ORDERS, DISPENSERS, VALIDATE = (
        "/api/health",
        "/api/work-orders",
        "/api/dispensers",
        "/api/auth/validate",
    )

app = FastAPI(title="FossaWork V2 (sandbox)", docs_url=None, redoc_url=None, openapi_url=None)


def fault(name: str) -> bool:
    """Whether a fault is on for this process: a flag file, or one naming a pid (a state that a restart ends)."""
    try:
        owner = (FAULT_DIR / name).read_text().strip()
    except OSError:
        return False
    return not owner.isdigit() or int(owner) == os.getpid()


# --- logs ------------------------------------------------------------------------------------

# v2: the files opened at start, by kind (several kinds share the general log). The runbook layout opens per write.
HELD = {}
HELD_LOCK = threading.Lock()


def open_logs() -> None:
    """v2: open (truncate) the backend's own log files and hold them, as its logging handlers do at every start.

    Held in append mode: a file moved away keeps receiving lines, and lines others append are never overwritten.
    """
    when = logfmt.now()
    opened = {}
    for kind in logfmt.OPENED_AT_START:
        path = logfmt.log_path(LOG_DIR, LAYOUT, kind, when)
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(path, "a", buffering=1, encoding="utf-8")
        handle.truncate(0)
        opened[path] = handle
    for kind in logfmt.FILES[LAYOUT]:
        path = logfmt.log_path(LOG_DIR, LAYOUT, kind, when)
        if path in opened:
            HELD[kind] = opened[path]


def log(kind: str, level: str, logger: str, message: str, where: str = "handle:120") -> None:
    when = logfmt.now()
    line = logfmt.line(LAYOUT, when, level, logger, message, where)
    try:
        if kind in HELD:
            with HELD_LOCK:
                HELD[kind].write(line + "\n")
        elif (path := logfmt.log_path(LOG_DIR, LAYOUT, kind, when)) is not None:
            logfmt.append(path, [line])
    except OSError:
        pass


def log_error(message: str) -> None:
    for kind in logfmt.ERROR_KINDS[LAYOUT]:
        log(kind, "ERROR", logfmt.APP_ERROR_LOGGER, message, "error_handler:77")


def connect() -> sqlite3.Connection:
    # mode=rw: never create a missing database; its journal mode is the file's own; short busy timeout.
    conn = sqlite3.connect(f"file:{DB_PATH}?mode=rw", uri=True, timeout=2.0)
    conn.row_factory = sqlite3.Row
    return conn


def start_scheduler() -> None:
    """The background scheduler's job store: it opens the database as SQLAlchemy does, creating a missing file
    (in WAL mode, with the process's umask: 0644), and creates only its own table; nothing else creates tables."""
    fresh = not os.path.exists(DB_PATH)
    try:
        conn = sqlite3.connect(DB_PATH, timeout=2.0)
        try:
            if fresh:
                conn.execute("PRAGMA journal_mode=WAL")
            conn.executescript(SCHEDULER_SQL)
        finally:
            conn.close()
    except sqlite3.Error as exc:
        # The deployed backend starts anyway: its routes report the database when they need it.
        log_error(f"Scheduler job store unavailable: sqlite3.{type(exc).__name__}: {exc}")


# --- CPU burn fault: a watcher thread spins while the flag exists ---------------------------


def _burner() -> None:
    # hashlib releases the GIL on large buffers, so two burners at a 75 % duty cycle hold ~1.5 cores whatever
    # the request handlers do: the process shows well over 100 % CPU while a two-core host stays near 75 %,
    # under the system threshold, so the fault proves the process check alone.
    block = b"x" * (1 << 20)
    while True:
        if fault("backend_cpu_burn"):
            busy_until = time.monotonic() + 0.075
            while time.monotonic() < busy_until:
                hashlib.sha256(block).digest()
            time.sleep(0.025)
        else:
            time.sleep(0.25)


for _ in range(2):
    threading.Thread(target=_burner, name="fault-burner", daemon=True).start()


@app.on_event("startup")
async def _startup() -> None:
    if V2:
        open_logs()
        start_scheduler()
    log("general", "INFO", "fossawork.main", f"Application startup complete (pid {os.getpid()})", "startup:57")


# --- auth helpers ----------------------------------------------------------------------------


def make_token(user_id: str, username: str) -> str:
    now = datetime.now(UTC)
    payload = {"sub": username, "user_id": user_id, "iat": now, "exp": now + timedelta(minutes=TOKEN_MINUTES)}
    return jwt.encode(payload, SECRET_KEY, algorithm="HS256")


def decode_token(request: Request) -> dict | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    token = token.strip()
    try:
        return jwt.decode(token, SECRET_KEY, algorithms=["HS256"], options={"require": ["exp", "sub"]})
    except jwt.PyJWTError:
        pass
    if fault("alg_confusion_accepted"):
        # A hand-rolled verifier that checks the HMAC whatever algorithm the header claims (HS/RS confusion).
        signing_input, _, signature = token.rpartition(".")
        expected = (
            base64.urlsafe_b64encode(hmac.new(SECRET_KEY.encode(), signing_input.encode(), hashlib.sha256).digest())
            .rstrip(b"=")
            .decode()
        )
        with contextlib.suppress(jwt.PyJWTError):
            claimed = jwt.get_unverified_header(token).get("alg", "")
            if claimed[:2] in ("RS", "ES", "PS") and hmac.compare_digest(signature, expected):
                return jwt.decode(
                    token, options={"verify_signature": False, "verify_exp": True, "require": ["exp", "sub"]}
                )
    if fault("alg_none_accepted"):
        try:
            if jwt.get_unverified_header(token).get("alg", "").lower() == "none":
                return jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError:
            return None
    return None


def unauthorized() -> JSONResponse:
    return JSONResponse({"detail": "Not authenticated"}, status_code=401, headers={"WWW-Authenticate": "Bearer"})


# --- middleware: faults, CORS, request log ---------------------------------------------------

REQUESTS: dict[tuple[str, int], int] = {}  # (method, status) -> count, for /metrics


@app.middleware("http")
async def middleware(request: Request, call_next):
    while fault("api_hang"):  # accepted, never answered while the fault lasts
        await asyncio.sleep(0.2)
    if fault("api_slow"):
        await asyncio.sleep(1.5)
    start = time.perf_counter()
    try:
        response = await call_next(request)
    except Exception as exc:  # pragma: no cover - defensive
        log_error(f"Unhandled {type(exc).__name__}: {exc}")
        response = JSONResponse({"detail": "Internal server error"}, status_code=500)
    origin = request.headers.get("origin")
    preflight = request.method == "OPTIONS" and "access-control-request-method" in request.headers
    if fault("cors_wildcard"):
        response.headers["Access-Control-Allow-Origin"] = "*"
        response.headers["Access-Control-Allow-Credentials"] = "true"
    elif (
        origin in ALLOWED_ORIGINS
        or (origin and response.status_code == 401 and fault("cors_reflects_origin"))
        or (origin and preflight and fault("cors_preflight_reflects_origin"))
    ):
        # The second case: an error path that echoes any Origin with credentials, as deployed FossaWork's 401s can;
        # the third: Starlette's CORSMiddleware given allow_origins=["*"] with allow_credentials=True, which answers
        # a preflight by echoing its Origin.
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Access-Control-Allow-Credentials"] = "true"
        response.headers["Vary"] = "Origin"
    key = (request.method, response.status_code)
    REQUESTS[key] = REQUESTS.get(key, 0) + 1
    ms = (time.perf_counter() - start) * 1000
    log(
        "api",
        "INFO",
        "fossawork.api",
        f"API {request.method} {request.url.path} -> {response.status_code} ({ms:.2f}ms)",
        "log_api_request:341",
    )
    return response


ALLOWED_ORIGINS = set(filter(None, os.environ.get("FOSSA_SANDBOX_ORIGINS", "").split(",")))


@app.exception_handler(StarletteHTTPException)
async def http_error(request: Request, exc: StarletteHTTPException):
    # v2 as deployed: without a valid token, unknown routes look like protected ones.
    if exc.status_code == 404 and V2 and decode_token(request) is None:
        return unauthorized()
    return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=getattr(exc, "headers", None))


# --- routes ----------------------------------------------------------------------------------


@app.get(HEALTH)
async def health():
    # Static: it never opens the database (deployed /health stays 200 on a garbage database file).
    return {"status": "healthy", "service": "fossawork-v2-backend", "timestamp": datetime.now(UTC).isoformat()}


def _find_user(username: str):
    conn = connect()
    try:
        return conn.execute(
            "SELECT id, email, password_hash FROM users WHERE (username = ? OR email = ?) AND is_active = 1",
            (username, username),
        ).fetchone()
    finally:
        conn.close()


def _workfossa_accepts(username: str, password: str) -> bool | None:
    """Log in to WorkFossa with these credentials, as the deployed login's browser does: True, False (rejected,
    which WorkFossa counts as a failed login on that account), or None when the site cannot be reached."""
    form = urllib.parse.urlencode({"email": username, "password": password}).encode()
    try:
        with urllib.request.urlopen(WORKFOSSA_URL + "/login", data=form, timeout=WORKFOSSA_TIMEOUT) as answer:
            return answer.status == 200
    except urllib.error.HTTPError as exc:
        return False if exc.code == 401 else None
    except OSError:
        return None


def _remember_login(username: str, password: str):
    """What every successful v2 login writes: the user's last-used time and their WorkFossa credentials,
    re-encrypted. The user's row, or None for an unknown user."""
    conn = connect()
    try:
        with conn:
            row = conn.execute(
                "SELECT id, email FROM users WHERE (username = ? OR email = ?) AND is_active = 1", (username, username)
            ).fetchone()
            if row is None:
                return None
            now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S")
            conn.execute("UPDATE users SET last_used = ? WHERE id = ?", (now, row["id"]))
            store_credentials(conn, MASTER_KEY, row["id"], username, password, now)
        return row
    finally:
        conn.close()


@app.post("/api/auth/login")
async def login(request: Request):
    if fault("login_500"):
        log_error("Login failed: sqlalchemy.exc.OperationalError (simulated)")
        return JSONResponse({"detail": "Internal server error"}, status_code=500)
    try:
        body = await request.json()
        username, password = str(body["username"]), str(body["password"])
    except Exception:
        return JSONResponse({"detail": "username and password required"}, status_code=422)
    if V2:
        return await _login_v2(username, password)
    try:
        # In a worker thread, as FastAPI runs sync code: a locked database slows logins, not the event loop.
        row = await asyncio.to_thread(_find_user, username)
    except sqlite3.Error as exc:
        log_error(f"Login database error: sqlite3.{type(exc).__name__}: {exc}")
        return JSONResponse({"detail": "Database unavailable"}, status_code=503)
    if row is None or not (fault("login_accepts_any") or verify_password(password, row["password_hash"])):
        return JSONResponse({"detail": "Incorrect username or password"}, status_code=401)
    token = make_token(row["id"], username)
    return {"access_token": token, "token_type": "bearer", "user_id": row["id"], "email": row["email"]}


async def _login_v2(username: str, password: str):
    """FossaWork V2's login: the password is checked on WorkFossa (seconds), not against a local hash, unless
    in development mode; a success writes to the database."""
    if not (DEV_MODE or fault("login_accepts_any")):
        accepted = await asyncio.to_thread(_workfossa_accepts, username, password)
        if accepted is None:
            log_error(f"Login failed: WorkFossa unreachable at {WORKFOSSA_URL}")
            return JSONResponse({"detail": "WorkFossa unavailable"}, status_code=503)
        if not accepted:
            return JSONResponse({"detail": "Invalid WorkFossa credentials"}, status_code=401)
    try:
        row = await asyncio.to_thread(_remember_login, username, password)
    except sqlite3.Error as exc:
        log_error(f"Login database error: sqlite3.{type(exc).__name__}: {exc}")
        return JSONResponse({"detail": "Database unavailable"}, status_code=503)
    if row is None:
        return JSONResponse({"detail": "User not registered"}, status_code=401)
    token = make_token(row["id"], username)
    return {"access_token": token, "token_type": "bearer", "user_id": row["id"], "email": row["email"]}


@app.get(VALIDATE)
async def validate(request: Request):
    if fault("auth_routes_missing"):
        return JSONResponse({"detail": "Not Found"}, status_code=404)
    if fault("validate_accepts_any"):
        return {"valid": True, "user_id": None}
    claims = decode_token(request)
    if claims is None or fault("validate_rejects_valid"):
        return unauthorized()
    if V2:  # /api/auth/me: the current user
        return {"id": claims.get("user_id"), "email": claims.get("sub"), "is_active": True}
    return {
        "valid": True,
        "user_id": claims.get("user_id"),
        "username": claims.get("sub"),
        "expires": claims.get("exp"),
    }


@app.post("/api/auth/logout")
async def logout(request: Request):
    if fault("auth_routes_missing"):
        return JSONResponse({"detail": "Not Found"}, status_code=404)
    if decode_token(request) is None:
        return unauthorized()
    return {"message": "Logged out"}


def _query(sql: str, args: tuple, with_dispensers: bool = False) -> JSONResponse | list:
    try:
        conn = connect()
        try:
            rows = [dict(r) for r in conn.execute(sql, args).fetchall()]
            if with_dispensers:
                # FossaWork V2 serves dispensers inside each work order: it has no dispensers list route.
                ids = [r["id"] for r in rows]
                found: dict[int, list] = {i: [] for i in ids}
                marks = ",".join("?" * len(ids))
                for d in conn.execute(f"SELECT * FROM dispensers WHERE work_order_id IN ({marks}) ORDER BY id", ids):
                    found[d["work_order_id"]].append(dict(d))
                for r in rows:
                    r["dispensers"] = found[r["id"]]
            return rows
        finally:
            conn.close()
    except sqlite3.Error as exc:
        log_error(f"sqlite3.{type(exc).__name__}: {exc}")
        return JSONResponse({"detail": f"Database error: {type(exc).__name__}"}, status_code=503)


def _user_filter(request: Request, claims: dict) -> tuple[str, tuple] | JSONResponse:
    if not V2:
        return "", ()
    user_id = request.query_params.get("user_id")
    if not user_id:
        return JSONResponse({"detail": "user_id query parameter required"}, status_code=422)
    if user_id != claims.get("user_id"):
        return JSONResponse({"detail": "Not permitted for this user"}, status_code=403)
    return user_id, (user_id,)


def _scope(request: Request) -> tuple[str, tuple] | JSONResponse:
    """The caller's row filter, or the 401 / 403 / 422 answer a protected list route gives instead."""
    claims = decode_token(request)
    return unauthorized() if claims is None else _user_filter(request, claims)


def _serializer_broken() -> JSONResponse:
    log_error("Traceback (most recent call last): KeyError: 'fuel_grades' in dispenser serializer")
    return JSONResponse({"detail": "Internal server error"}, status_code=500)


@app.get(WORK_ORDERS)
async def work_orders(request: Request, limit: int = PAGE, offset: int = 0):
    flt = _scope(request)
    if isinstance(flt, JSONResponse):
        return flt
    if V2 and fault("api_500"):  # the dispenser serializer sits in this route in v2
        return _serializer_broken()
    where = "WHERE user_id = ?" if flt[0] else ""
    limit = max(1, min(limit, 500))
    sql = f"SELECT * FROM work_orders {where} ORDER BY id LIMIT {limit} OFFSET {max(0, offset)}"
    return await asyncio.to_thread(_query, sql, flt[1], V2)


@app.post(WORK_ORDERS)
async def create_work_order(request: Request):
    claims = decode_token(request)
    if claims is None:
        return unauthorized()
    try:
        body = await request.json()
        site = str(body["site_name"])
    except Exception:
        return JSONResponse({"detail": "site_name required"}, status_code=422)
    try:
        conn = connect()
        try:
            with conn:
                cur = conn.execute(
                    "INSERT INTO work_orders (user_id, external_id, site_name, address, service_code, status,"
                    " scheduled_date, created_at) VALUES (?,?,?,?,?,?,?,?)",
                    (
                        claims.get("user_id"),
                        f"W-NEW-{time.time_ns()}",
                        site,
                        str(body.get("address", "")),
                        str(body.get("service_code", "2861")),
                        "pending",
                        datetime.now().strftime("%Y-%m-%d"),
                        datetime.now(UTC).isoformat(),
                    ),
                )
                new_id = cur.lastrowid
        finally:
            conn.close()
    except sqlite3.Error as exc:
        log_error(f"sqlite3.{type(exc).__name__}: {exc}")
        return JSONResponse({"detail": f"Database error: {type(exc).__name__}"}, status_code=503)
    return JSONResponse({"id": new_id, "site_name": site, "status": "pending"}, status_code=201)


async def dispensers(request: Request, limit: int = PAGE, offset: int = 0):
    flt = _scope(request)
    if isinstance(flt, JSONResponse):
        return flt
    if fault("api_500"):
        return _serializer_broken()
    limit = max(1, min(limit, 500))
    sql = f"SELECT * FROM dispensers ORDER BY id LIMIT {limit} OFFSET {max(0, offset)}"
    return await asyncio.to_thread(_query, sql, flt[1])


def _user_count() -> int:
    conn = connect()
    try:
        return conn.execute("SELECT COUNT(*) FROM users").fetchone()[0]
    finally:
        conn.close()


async def auth_status(request: Request):
    return {"authenticated": decode_token(request) is not None, "dev_mode": DEV_MODE}


async def setup_status():
    try:
        users = await asyncio.to_thread(_user_count)
    except sqlite3.Error as exc:
        log_error(f"sqlite3.{type(exc).__name__}: {exc}")
        return JSONResponse({"detail": f"Database error: {type(exc).__name__}"}, status_code=503)
    return {"setup_required": users == 0, "user_count": users}


async def metrics():
    lines = [
        "# HELP fossawork_http_requests_total HTTP requests answered, by method and status.",
        "# TYPE fossawork_http_requests_total counter",
    ] + [f'fossawork_http_requests_total{{method="{m}",status="{s}"}} {n}' for (m, s), n in sorted(REQUESTS.items())]
    return PlainTextResponse("\n".join(lines) + "\n", media_type="text/plain; version=0.0.4")


if V2:
    app.get("/api/auth/status")(auth_status)
    app.get("/api/setup/status")(setup_status)
    app.get("/metrics")(metrics)
else:
    app.get(DISPENSERS)(dispensers)
