"""Small misbehaving HTTP servers on 127.0.0.1 for the hostile-target self-tests.

Each server runs in daemon threads of the test process, listens on a free
port and is stopped by :meth:`HostileServer.stop` (shutdown, then every open
connection is shut down so no handler thread outlives its test). Every
handler loop is bounded by the server's stop event and a hard cap.
"""

from __future__ import annotations

import datetime
import os
import socket
import socketserver
import ssl
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from xml.etree import ElementTree

from observe import profile

GiB = 1024**3
HARD_CAP = 60.0  # seconds: no handler keeps a connection longer than this, whatever the client does


def _read_request(sock: socket.socket) -> bytes:
    """The request head (up to the blank line), or what arrived before the client gave up."""
    data = b""
    sock.settimeout(5)
    try:
        while b"\r\n\r\n" not in data and len(data) < 65536:
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
    except OSError:
        pass
    return data


class _Handler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        server: HostileServer = self.server.owner  # type: ignore[attr-defined]
        with server._lock:
            server._conns.add(self.request)
        try:
            head = _read_request(self.request)
            getattr(server, f"_serve_{server.behaviour}")(self.request, head)
        except OSError:
            pass  # the client went away: expected for every behaviour here
        finally:
            with server._lock:
                server._conns.discard(self.request)


class _TCPServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


class HostileServer:
    """One misbehaving server: ``hang``, ``drip``, ``chunked_drip``, ``slow_headers``, ``huge``, ``redirect_loop``,
    ``answer`` (a fixed status / content type / body) or ``tls`` (``answer`` behind a self-signed certificate)."""

    def __init__(
        self,
        behaviour: str,
        *,
        status: int = 200,
        content_type: str = "application/json",
        body: bytes = b"{}",
        certdir: Path | None = None,
        interval: float = 0.5,
    ):
        self.behaviour = "answer" if behaviour == "tls" else behaviour
        self.status, self.content_type, self.body, self.interval = status, content_type, body, interval
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._conns: set[socket.socket] = set()
        self._server = _TCPServer(("127.0.0.1", 0), _Handler, bind_and_activate=True)
        self._server.owner = self  # type: ignore[attr-defined]
        self.port = self._server.server_address[1]
        self.scheme = "http"
        if behaviour == "tls":
            self.scheme = "https"
            cert, key = self_signed_certificate(certdir or Path("/tmp"))
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(cert, key)
            self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    def start(self) -> HostileServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop accepting, wake every handler and close its connection."""
        self._stop.set()
        self._server.shutdown()
        with self._lock:
            conns = list(self._conns)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> HostileServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- behaviours: each returns when the server stops, the client leaves, or HARD_CAP passes ----------
    def _wait(self, seconds: float) -> bool:
        """Sleep; False once the server is stopping."""
        return not self._stop.wait(seconds)

    def _serve_hang(self, sock: socket.socket, head: bytes) -> None:
        self._wait(HARD_CAP)

    def _serve_drip(self, sock: socket.socket, head: bytes) -> None:
        # No Content-Length, no chunking: the body ends when the connection does, which is never.
        status = f"HTTP/1.1 {self.status} X\r\n".encode()
        sock.sendall(status + b"Content-Type: application/json\r\nConnection: close\r\n\r\n{")
        self._drip(sock, lambda: b" ")

    def _serve_chunked_drip(self, sock: socket.socket, head: bytes) -> None:
        sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
        self._drip(sock, lambda: b"1\r\n \r\n")

    def _serve_slow_headers(self, sock: socket.socket, head: bytes) -> None:
        sock.sendall(b"HTTP/1.1 200 OK\r\n")
        self._drip(sock, lambda: b"X-Slow: 1\r\n")

    def _drip(self, sock: socket.socket, piece) -> None:
        end = time.monotonic() + HARD_CAP
        while time.monotonic() < end and self._wait(self.interval):
            sock.sendall(piece())

    def _serve_huge(self, sock: socket.socket, head: bytes) -> None:
        head = f"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {GiB}\r\n\r\n"
        sock.sendall(head.encode())
        block, sent = b"x" * 65536, 0
        end = time.monotonic() + HARD_CAP
        while sent < GiB and not self._stop.is_set() and time.monotonic() < end:
            sock.sendall(block)  # generated as it goes; raises once the client closes
            sent += len(block)

    def _serve_redirect_loop(self, sock: socket.socket, head: bytes) -> None:
        # Every request on the keep-alive connection is sent back to itself.
        end = time.monotonic() + HARD_CAP
        while head and time.monotonic() < end and not self._stop.is_set():
            path = head.split(b" ", 2)[1] if head.count(b" ") >= 2 else b"/"
            sock.sendall(b"HTTP/1.1 302 Found\r\nLocation: " + path + b"\r\nContent-Length: 0\r\n\r\n")
            head = _read_request(sock)

    def _serve_answer(self, sock: socket.socket, head: bytes) -> None:
        sock.sendall(
            f"HTTP/1.1 {self.status} X\r\nContent-Type: {self.content_type}\r\nContent-Length: {len(self.body)}\r\n"
            "Connection: close\r\n\r\n".encode()
            + self.body
        )


def self_signed_certificate(directory: Path) -> tuple[str, str]:
    """(cert.pem, key.pem) of a fresh self-signed certificate for 127.0.0.1, which no client trusts."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "hostile.invalid")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return str(cert_path), str(key_path)


# -- inner runs of the suite ------------------------------------------------------------------------

ROOT = Path(__file__).resolve().parent.parent
# remediation.plugin is wired in the root conftest but may not be importable while it is being built;
# the hostile-target tests are about the checks and fixtures, so inner runs leave it out.
INNER_OPTS = ("-p", "no:remediation.plugin", "-p", "no:cacheprovider", "-q", "-rfEs")


@dataclass
class SuiteRun:
    """The outcome of one ``python -m pytest`` run of the health suite in a subprocess."""

    returncode: int
    output: str
    elapsed: float
    cases: dict[str, tuple[str, str]]  # test name -> (passed | failed | skipped | error, message)

    def outcome(self, name: str) -> str:
        return self.cases[name][0]

    def message(self, name: str) -> str:
        return self.cases[name][1]

    def named(self, prefix: str) -> dict[str, tuple[str, str]]:
        """Cases whose name starts with ``prefix`` (every parametrization of one check)."""
        return {k: v for k, v in self.cases.items() if k.startswith(prefix)}


def write_targets(path: Path, name: str, values: dict) -> Path:
    """A targets file holding one profile ``name`` (tables for dict values)."""
    path.write_text(profile.dump(name, values), encoding="utf-8")
    return path


def offline_profile(tmp: Path, url: str = "http://127.0.0.1:9", **extra) -> dict:
    """Profile values pointing every path into ``tmp`` and every URL at ``url``, with 1 s timeouts."""
    values = {
        "api_url": url,
        "frontend_url": url,
        "workfossa_url": url,
        "db_path": str(tmp / "missing.db"),
        "backup_dir": str(tmp / "backups"),
        "log_dir": str(tmp / "logs"),
        "credentials_dir": str(tmp / "credentials"),
        "frontend_dir": str(tmp / "frontend"),
        "env_file": str(tmp / "missing.env"),
        "pid_dir": str(tmp / "run"),
        "backend_unit": "",
        "frontend_unit": "",
        "browser_executable": str(tmp / "no-chromium"),
        "disk_path": str(tmp),
        "timeouts": {"connect": 1.0, "read": 1.0, "frontend": 1.0, "workfossa": 1.0, "browser": 2.0},
    }
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(values.get(key), dict):
            values[key] = {**values[key], **value}
        else:
            values[key] = value
    return values


def run_suite(
    targets: Path,
    target: str,
    *args: str,
    timeout: float = 90,
    env: dict | None = None,
    opts: tuple[str, ...] = INNER_OPTS,
) -> SuiteRun:
    """Run the health suite against one profile in a subprocess; parse its JUnit XML into cases."""
    junit = targets.with_suffix(".junit.xml")
    # --opt=value, so that pytest's early rootdir guess does not take the targets file for a test path.
    command = [
        sys.executable,
        "-m",
        "pytest",
        f"--target-file={targets}",
        f"--target={target}",
        *opts,
        f"--junitxml={junit}",
        *args,
    ]
    environ = {**os.environ, "COLUMNS": "200", **(env or {})}
    environ.pop("PYTEST_ADDOPTS", None)
    start = time.monotonic()
    proc = subprocess.run(
        command,
        cwd=ROOT,
        capture_output=True,
        text=True,
        errors="replace",
        timeout=timeout,
        env=environ,
        stdin=subprocess.DEVNULL,
    )
    elapsed = time.monotonic() - start
    return SuiteRun(proc.returncode, proc.stdout + proc.stderr, elapsed, junit_cases(junit))


def junit_cases(path: Path) -> dict[str, tuple[str, str]]:
    if not path.exists():
        return {}
    cases = {}
    for case in ElementTree.parse(path).iter("testcase"):
        outcome, message = "passed", ""
        for kind in ("failure", "error", "skipped"):
            node = case.find(kind)
            if node is not None:
                outcome = {"failure": "failed"}.get(kind, kind)
                message = (node.get("message") or "") + "\n" + (node.text or "")
                break
        cases[case.get("name")] = (outcome, message)
    return cases


def assert_ran_cleanly(run: SuiteRun) -> None:
    """The run went through: exit 0 or 1 (checks passed or failed, not 2-4), no traceback, no check errored."""
    __tracebackhide__ = True
    tail = run.output[-4000:]
    assert run.returncode in (0, 1), f"exit {run.returncode}, expected 0 or 1:\n{tail}"
    assert "Traceback" not in run.output and "INTERNALERROR" not in run.output, tail
    errored = [name for name, (outcome, _) in run.cases.items() if outcome == "error"]
    assert not errored, f"checks errored instead of failing: {errored}\n{tail}"
