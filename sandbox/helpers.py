"""Small helper processes of the sandbox: `python -m sandbox.helpers KIND ...` (stdlib only).

workfossa PORT DIR    the WorkFossa stand-in: login form at /, logins checked against DIR/accounts.json and
                      counted in DIR/logins.json
json PORT             answers every GET with 200 application/json {"error":"not html"}
hang PORT             accepts TCP connections and never answers
dblock DB             holds BEGIN EXCLUSIVE on DB until killed (prints "locked" when it holds it)
zombies N DIR         starts N headless chromium processes in new sessions, prints their pids, exits
service UID GID DIR -- ARGV...
                      (root) execs ARGV as UID:GID, the service manager's User=; the interpreter's installation
                      and DIR stay reachable for that user (see as_service)
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs

# A WorkFossa login takes seconds (the real one drives a browser for 10-30 s): long against every other route,
# short enough for the sandbox's API read timeout.
LOGIN_SECONDS = 2.0

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
    state_dir: Path  # set by main(): accounts.json in, logins.json out
    counts_lock = threading.Lock()

    def do_GET(self):
        if self.path.split("?")[0] in ("/", "/login", "/app/login"):
            self._send(200, WORKFOSSA_PAGE, "text/html; charset=utf-8")
        else:
            self._send(404, b"<html><title>WorkFossa</title><body>Not found</body></html>", "text/html")

    def do_HEAD(self):
        self.do_GET()

    def do_POST(self):
        length = int(self.headers.get("content-length") or 0)
        form = parse_qs(self.rfile.read(length).decode("utf-8", "replace"))
        if self.path.split("?")[0] not in ("/login", "/app/login"):
            self._send(404, b"<html><title>WorkFossa</title><body>Not found</body></html>", "text/html")
            return
        time.sleep(LOGIN_SECONDS)
        email, password = (form.get(k, [""])[0] for k in ("email", "password"))
        try:
            accounts = json.loads((self.state_dir / "accounts.json").read_text())
        except (OSError, ValueError):
            accounts = {}
        ok = bool(password) and accounts.get(email) == password
        self._count("succeeded" if ok else "failed")
        if ok:
            self._send(200, b"<html><title>WorkFossa</title><body>Dashboard</body></html>", "text/html")
        else:
            self._send(401, b"<html><title>WorkFossa</title><body>Invalid credentials</body></html>", "text/html")

    def _count(self, outcome: str) -> None:
        """Count a login in logins.json: a failed one is a failed login on a real account (lockouts, alerts)."""
        path = self.state_dir / "logins.json"
        with self.counts_lock:
            try:
                counts = json.loads(path.read_text())
            except (OSError, ValueError):
                counts = {"succeeded": 0, "failed": 0}
            counts[outcome] += 1
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(counts))
            os.replace(tmp, path)

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
        scratch = os.path.join(base, f"tmp-{i}")
        os.makedirs(profile, exist_ok=True)
        os.makedirs(scratch, exist_ok=True)
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
            # Chromium's own org.chromium.Chromium.* scratch goes to TMPDIR: inside the fault's folder, which
            # clear removes, instead of /tmp, where six were left behind per injection.
            env={**os.environ, "TMPDIR": scratch},
        )
        pids.append(proc.pid)
    print(" ".join(map(str, pids)), flush=True)
    os._exit(0)  # the parent exits: the browsers are orphans


CLONE_NEWNS, MS_BIND, MS_REC, MS_PRIVATE = 0x00020000, 4096, 16384, 1 << 18


def _searchable(path: str, uid: int, gid: int) -> bool:
    st = os.stat(path)
    bit = 0o100 if st.st_uid == uid else 0o010 if st.st_gid == gid else 0o001
    return bool(st.st_mode & bit)


def _blocking(path: str, uid: int, gid: int) -> str | None:
    """The outermost directory on the way to ``path`` that uid:gid may not enter, or None."""
    parts = path.strip("/").split("/")
    for depth in range(len(parts)):
        ancestor = "/" + "/".join(parts[:depth])
        if not _searchable(ancestor, uid, gid):
            return ancestor
    return None


def as_service(uid: int, gid: int, root: str, argv: list[str]) -> None:
    """Exec ``argv`` as uid:gid (run as root, like a service manager with User=).

    The interpreter running this may be installed where that user cannot go (pyenv under /root, mode 0700). Then,
    in a mount namespace of this process alone, each such directory is covered by an empty tmpfs into which the
    interpreter's installation (and the sandbox ``root``) are bind-mounted back at their own paths: the backend
    sees them, and nothing else of that directory; the host's mounts and modes are untouched. The namespace ends
    with the process.
    """
    needs = sorted({os.path.realpath(p) for p in (sys.base_prefix, sys.prefix, root)})
    blocked = {need: _blocking(need, uid, gid) for need in needs}
    if any(blocked.values()):
        libc = ctypes.CDLL(None, use_errno=True)

        def check(rc: int) -> None:
            if rc != 0:
                err = ctypes.get_errno()
                raise OSError(err, os.strerror(err))

        check(libc.unshare(CLONE_NEWNS))
        check(libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None))
        # Held by fd: once their parent is covered, the installations have no path left to bind them from.
        held = {need: os.open(need, os.O_PATH | os.O_DIRECTORY) for need, cover in blocked.items() if cover}
        for cover in sorted(set(filter(None, blocked.values()))):
            check(libc.mount(b"tmpfs", cover.encode(), b"tmpfs", 0, b"mode=0755"))
        for need, fd in held.items():
            os.makedirs(need, exist_ok=True)
            check(libc.mount(f"/proc/self/fd/{fd}".encode(), need.encode(), None, MS_BIND | MS_REC, None))
            os.close(fd)
    os.setgroups([])
    os.setgid(gid)
    os.setuid(uid)
    os.execv(argv[0], argv)


def main(argv: list[str]) -> None:
    kind = argv[0]
    if kind == "workfossa":
        WorkFossa.state_dir = Path(argv[2])
        serve(WorkFossa, int(argv[1]))
    elif kind == "json":
        serve(JsonOnly, int(argv[1]))
    elif kind == "hang":
        hang(int(argv[1]))
    elif kind == "dblock":
        dblock(argv[1])
    elif kind == "zombies":
        zombies(int(argv[1]), argv[2])
    elif kind == "service":
        as_service(int(argv[1]), int(argv[2]), argv[3], argv[argv.index("--") + 1 :])
    else:
        raise SystemExit(f"unknown helper {kind!r}")


if __name__ == "__main__":
    threading.current_thread().name = "helper"
    main(sys.argv[1:])
