"""A backend whose login writes, as FossaWork V2's does, and that records what reached it: for tests/test_safe_probes.

FastAPI under a real uvicorn over a real WAL-mode SQLite file. Its login takes a pydantic body, as the deployed
application's does, so a body without username and password is refused with 422 before the handler runs; the
handler "forwards" the credentials to WorkFossa (counted, failed ones apart), then, on success, writes the user's
last-used time and its credentials re-encrypted with Fernet into user_credentials. With APP_ACCEPT_ANY=1 it
accepts any password and stores it, as FossaWork V2 does in WORKFOSSA_DEV_MODE; APP_LOGIN_SECONDS is how long its
login takes. Every request is appended to
APP_RECORD as one JSON line: method, path, start and end, and whether the login handler ran.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import time

import jwt
from cryptography.fernet import Fernet
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

DB = os.environ["APP_DB"]
RECORD = os.environ["APP_RECORD"]
SECRET_KEY = os.environ["APP_SECRET_KEY"]
FERNET = Fernet(os.environ["APP_FERNET_KEY"].encode())
ACCEPT_ANY = os.environ.get("APP_ACCEPT_ANY") == "1"
PASSWORDS = json.loads(os.environ["APP_PASSWORDS"])  # email -> the WorkFossa password that logs in
# The browser session to WorkFossa: long enough for concurrent logins to overlap (production: 10-30 s).
LOGIN_SECONDS = float(os.environ.get("APP_LOGIN_SECONDS", "0.2"))

app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)


class LoginRequest(BaseModel):
    username: str
    password: str


def record(**entry) -> None:
    with open(RECORD, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(entry) + "\n")


def connect() -> sqlite3.Connection:
    return sqlite3.connect(f"file:{DB}?mode=rw", uri=True, timeout=2.0)


@app.middleware("http")
async def log_requests(request: Request, call_next):
    start = time.time()
    response = await call_next(request)
    record(method=request.method, path=request.url.path, status=response.status_code, start=start, end=time.time())
    return response


def current_user(request: Request) -> str | None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        return None
    try:
        claims = jwt.decode(token.strip(), SECRET_KEY, algorithms=["HS256"], options={"require": ["exp", "sub"]})
    except jwt.PyJWTError:
        return None
    return claims.get("user_id")


def unauthorized() -> JSONResponse:
    return JSONResponse({"detail": "Not authenticated"}, status_code=401)


@app.get("/health")
async def health():
    return {"status": "healthy"}


@app.post("/api/auth/login")
async def login(body: LoginRequest):
    record(handler="login", username=body.username)
    await asyncio.sleep(LOGIN_SECONDS)
    accepted = ACCEPT_ANY or PASSWORDS.get(body.username) == body.password
    record(workfossa_login=body.username, failed=not accepted)
    if not accepted:
        return JSONResponse({"detail": "Incorrect username or password"}, status_code=401)
    conn = connect()
    try:
        with conn:
            row = conn.execute("SELECT id FROM users WHERE email = ?", (body.username,)).fetchone()
            if row is None:
                return JSONResponse({"detail": "Incorrect username or password"}, status_code=401)
            stored = FERNET.encrypt(json.dumps({"username": body.username, "password": body.password}).encode())
            conn.execute("UPDATE users SET last_used = ? WHERE id = ?", (time.time(), row[0]))
            conn.execute(
                "INSERT INTO user_credentials (user_id, encrypted) VALUES (?, ?) "
                "ON CONFLICT(user_id) DO UPDATE SET encrypted = excluded.encrypted",
                (row[0], stored),
            )
    finally:
        conn.close()
    now = int(time.time())
    token = jwt.encode({"sub": body.username, "user_id": row[0], "exp": now + 600}, SECRET_KEY, algorithm="HS256")
    return {"access_token": token, "token_type": "bearer", "user_id": row[0], "email": body.username}


@app.get("/api/auth/me")
async def me(request: Request):
    user = current_user(request)
    return unauthorized() if user is None else {"id": user}


@app.post("/api/auth/logout")
async def logout(request: Request):
    return unauthorized() if current_user(request) is None else {"message": "Logged out"}


@app.get("/api/v1/work-orders/")
async def work_orders(request: Request, user_id: str):
    user = current_user(request)
    if user is None:
        return unauthorized()
    if user != user_id:
        return JSONResponse({"detail": "Not permitted for this user"}, status_code=403)
    conn = connect()
    try:
        return [{"id": r[0]} for r in conn.execute("SELECT id FROM work_orders WHERE user_id = ?", (user_id,))]
    finally:
        conn.close()
