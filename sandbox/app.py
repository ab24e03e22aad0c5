"""The sandbox's FossaWork V2 backend: a real FastAPI app over the real SQLite file.

Imported only inside the uvicorn child process. Configuration comes from the
environment (FOSSA_SANDBOX_*); faults are flag files in FOSSA_SANDBOX_FAULT_DIR,
read per request, so most faults need no restart.
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
import warnings
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jwt
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from . import logfmt
from .seed import verify_password

warnings.filterwarnings("ignore", module="jwt")

ROOT = Path(os.environ.get("FOSSA_SANDBOX_ROOT", "."))
LAYOUT = os.environ.get("FOSSA_SANDBOX_LAYOUT", "runbook")
DB_PATH = os.environ.get("FOSSA_SANDBOX_DB", str(ROOT / "backend" / "fossawork_v2.db"))
LOG_DIR = Path(os.environ.get("FOSSA_SANDBOX_LOG_DIR", str(ROOT / "logs")))
FAULT_DIR = Path(os.environ.get("FOSSA_SANDBOX_FAULT_DIR", str(ROOT / "faults")))
ENV_FILE = Path(os.environ.get("FOSSA_SANDBOX_ENV_FILE", ".env"))
TOKEN_MINUTES = 30
PAGE = 100


def _read_env(path: Path) -> dict[str, str]:
    out = {}
    try:
        for raw in path.read_text().splitlines():
            if "=" in raw and not raw.lstrip().startswith("#"):
                k, _, v = raw.partition("=")
                out[k.strip()] = v.strip().strip("'\"")
    except OSError:
        pass
    return out


SECRET_KEY = _read_env(ENV_FILE).get("SECRET_KEY") or os.environ.get("SECRET_KEY", "")
if not SECRET_KEY:
    raise SystemExit("SECRET_KEY missing from the .env file")

if LAYOUT == "v2":
    HEALTH, WORK_ORDERS, DISPENSERS = "/health", "/api/v1/work-orders/", "/api/v1/dispensers/"
else:
    HEALTH, WORK_ORDERS, DISPENSERS = "/api/health", "/api/work-orders", "/api/dispensers"
PUBLIC = {HEALTH, "/api/auth/login"}

app = FastAPI(title="FossaWork V2 (sandbox)", docs_url=None, redoc_url=None, openapi_url=None)


def fault(name: str) -> bool:
    """Whether a fault is on for this process: a flag file, or one naming a pid (a state that a restart ends)."""
    try:
        owner = (FAULT_DIR / name).read_text().strip()
    except OSError:
        return False
    return not owner.isdigit() or int(owner) == os.getpid()


def log(kind: str, level: str, logger: str, message: str, where: str = "handle:120") -> None:
    when = logfmt.now()
    path = logfmt.log_path(LOG_DIR, LAYOUT, kind, when)
    if path is not None:
        try:
            logfmt.append(path, [logfmt.line(LAYOUT, when, level, logger, message, where)])
        except OSError:
            pass


APP_ERROR_LOGGER = logfmt.APP_ERROR_LOGGER


def log_error(message: str) -> None:
    log("backend_errors", "ERROR", APP_ERROR_LOGGER, message, "error_handler:77")
    log("errors", "ERROR", APP_ERROR_LOGGER, message, "error_handler:77")


def connect() -> sqlite3.Connection:
    # mode=rw: never create a missing database; default rollback journal; short busy timeout.
    conn = sqlite3.connect(f"file:{DB_PATH}?mode=rw", uri=True, timeout=2.0)
    conn.row_factory = sqlite3.Row
    return conn


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


# --- middleware: faults, request log ---------------------------------------------------------


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
    if fault("cors_wildcard"):
        response.headers["Access-Control-Allow-Origin"] = "*"
        response.headers["Access-Control-Allow-Credentials"] = "true"
    elif request.headers.get("origin") in ALLOWED_ORIGINS:
        response.headers["Access-Control-Allow-Origin"] = request.headers["origin"]
        response.headers["Access-Control-Allow-Credentials"] = "true"
        response.headers["Vary"] = "Origin"
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
    if exc.status_code == 404 and LAYOUT == "v2" and decode_token(request) is None:
        return unauthorized()
    return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=getattr(exc, "headers", None))


# --- routes ----------------------------------------------------------------------------------


@app.get(HEALTH)
async def health():
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


@app.get("/api/auth/validate")
async def validate(request: Request):
    if fault("auth_routes_missing"):
        return JSONResponse({"detail": "Not Found"}, status_code=404)
    if fault("validate_accepts_any"):
        return {"valid": True, "user_id": None}
    claims = decode_token(request)
    if claims is None or fault("validate_rejects_valid"):
        return unauthorized()
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


def _query(sql: str, args: tuple) -> JSONResponse | list:
    try:
        conn = connect()
        try:
            return [dict(r) for r in conn.execute(sql, args).fetchall()]
        finally:
            conn.close()
    except sqlite3.Error as exc:
        log_error(f"sqlite3.{type(exc).__name__}: {exc}")
        return JSONResponse({"detail": f"Database error: {type(exc).__name__}"}, status_code=503)


def _user_filter(request: Request, claims: dict) -> tuple[str, tuple] | JSONResponse:
    if LAYOUT != "v2":
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


@app.get(WORK_ORDERS)
async def work_orders(request: Request, limit: int = PAGE, offset: int = 0):
    flt = _scope(request)
    if isinstance(flt, JSONResponse):
        return flt
    where = "WHERE user_id = ?" if flt[0] else ""
    limit = max(1, min(limit, 500))
    sql = f"SELECT * FROM work_orders {where} ORDER BY id LIMIT {limit} OFFSET {max(0, offset)}"
    return await asyncio.to_thread(_query, sql, flt[1])


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


@app.get(DISPENSERS)
async def dispensers(request: Request, limit: int = PAGE, offset: int = 0):
    flt = _scope(request)
    if isinstance(flt, JSONResponse):
        return flt
    if fault("api_500"):
        log_error("Traceback (most recent call last): KeyError: 'fuel_grades' in dispenser serializer")
        return JSONResponse({"detail": "Internal server error"}, status_code=500)
    limit = max(1, min(limit, 500))
    if flt[0]:
        sql = (
            "SELECT d.* FROM dispensers d JOIN work_orders w ON w.id = d.work_order_id WHERE w.user_id = ?"
            f" ORDER BY d.id LIMIT {limit} OFFSET {max(0, offset)}"
        )
    else:
        sql = f"SELECT * FROM dispensers ORDER BY id LIMIT {limit} OFFSET {max(0, offset)}"
    return await asyncio.to_thread(_query, sql, flt[1])
