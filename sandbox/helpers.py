"""Small helper processes of the sandbox: `python -m sandbox.helpers KIND ...` (stdlib only).

workfossa PORT        the WorkFossa stand-in (login form at /)
json PORT             answers every GET with 200 application/json {"error":"not html"}
hang PORT             accepts TCP connections and never answers
dblock DB             holds BEGIN EXCLUSIVE on DB until killed (prints "locked" when it holds it)
zombies N DIR         starts N headless chromium processes in new sessions, prints their pids, exits
"""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

WORKFOSSA_PAGE = b"""<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>WorkFossa</title></head>
<body>
  <h1>WorkFossa</h1>
  <form id="login-form" method="post" action="/login">
    <label>Email <input type="email" name="email" id="email" placeholder="Email" autocomplete="username"></label>
    <label>Password <input type="password" name="password" id="password" placeholder="Password"></label>
    <input type="submit" value="Log In" id="login-submit">
  </form>
</body>
</html>
"""


class _Quiet(BaseHTTPRequestHandler):
    def log_message(self, *args):  # noqa: D401 - silence
        pass


class WorkFossa(_Quiet):
    def do_GET(self):
        if self.path.split("?")[0] in ("/", "/login", "/app/login"):
            self._send(200, WORKFOSSA_PAGE, "text/html; charset=utf-8")
        else:
            self._send(404, b"<html><title>WorkFossa</title><body>Not found</body></html>", "text/html")

    def do_HEAD(self):
        self.do_GET()

    def do_POST(self):
        length = int(self.headers.get("content-length") or 0)
        self.rfile.read(length)
        self._send(200, b"<html><title>WorkFossa</title><body>Invalid credentials</body></html>", "text/html")

    def _send(self, code, body, ctype):
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)


class JsonOnly(_Quiet):
    def do_GET(self):
        body = b'{"error":"not html"}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_HEAD = do_GET


def serve(handler, port: int) -> None:
    ThreadingHTTPServer.allow_reuse_address = True
    server = ThreadingHTTPServer(("127.0.0.1", port), handler)
    signal.signal(signal.SIGTERM, lambda *a: os._exit(0))
    server.serve_forever()


def hang(port: int) -> None:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(128)
    held = []
    signal.signal(signal.SIGTERM, lambda *a: os._exit(0))
    while True:
        conn, _ = sock.accept()
        held.append(conn)  # never read, never answered, never closed
        if len(held) > 500:
            held.pop(0).close()


def dblock(db: str) -> None:
    conn = sqlite3.connect(db, timeout=10, isolation_level=None)
    conn.execute("BEGIN EXCLUSIVE")
    print("locked", flush=True)
    signal.signal(signal.SIGTERM, lambda *a: os._exit(0))
    while True:
        time.sleep(3600)


def zombies(n: int, base: str) -> None:
    pids = []
    for i in range(n):
        profile = os.path.join(base, f"chromium-{i}")
        os.makedirs(profile, exist_ok=True)
        proc = subprocess.Popen(
            [
                "/usr/bin/chromium",
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                f"--user-data-dir={profile}",
                "about:blank",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        pids.append(proc.pid)
    print(" ".join(map(str, pids)), flush=True)
    os._exit(0)  # the parent exits: the browsers are orphans


def main(argv: list[str]) -> None:
    kind = argv[0]
    if kind == "workfossa":
        serve(WorkFossa, int(argv[1]))
    elif kind == "json":
        serve(JsonOnly, int(argv[1]))
    elif kind == "hang":
        hang(int(argv[1]))
    elif kind == "dblock":
        dblock(argv[1])
    elif kind == "zombies":
        zombies(int(argv[1]), argv[2])
    else:
        raise SystemExit(f"unknown helper {kind!r}")


if __name__ == "__main__":
    threading.current_thread().name = "helper"
    main(sys.argv[1:])
