"""Shared by test_gate, test_alerts and test_metrics: a tiny inner health suite and a webhook receiver.

The inner suite has one check per severity (api p1, db p2, frontend p3, logs p4)
whose failures are switched on by ``Suite.fail(...)`` between runs, and a flaky
check that fails only on its first call (a counter file), for --confirm.
"""

from __future__ import annotations

import json
import socket
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

MAIN = Path(__file__).resolve().parent.parent

INNER_CONFTEST = """
pytest_plugins = ["fixtures.target", "remediation.gate", "remediation.notify.alerts", "remediation.notify.metrics"]


def pytest_addoption(parser):
    # Stands in for remediation.plugin, which defines --report-dir in the real suite.
    parser.addoption("--report-dir", default=None)
"""

INNER_INI = """
[pytest]
addopts = --strict-markers --target-file=targets.toml --target=prod --report-dir=reports
    -p no:cacheprovider -p no:anyio -p no:benchmark -p no:hypothesispytest
# The repo's modules are already imported by the outer run, so they cannot be rewritten again: expected.
filterwarnings = ignore::pytest.PytestAssertRewriteWarning
"""

INNER_CHECKS = '''
import json
from pathlib import Path

import pytest

FAILING = set(json.loads(Path(__file__).with_name("failing.json").read_text()))


def check(name):
    if name in FAILING:
        pytest.fail(f"observed {name} down (Authorization: Bearer sekrit-token-123), expected up", pytrace=False)


@pytest.mark.p1
@pytest.mark.backend
@pytest.mark.fix("fix-backend-issues", "api_errors")
def test_api_answers():
    """API endpoints returning 500 errors."""
    check("api")


@pytest.mark.p2
@pytest.mark.database
@pytest.mark.fix("fix-database-issues", "database_issues")
def test_db_answers():
    """Database connectivity issues."""
    check("db")


@pytest.mark.p3
@pytest.mark.frontend
@pytest.mark.fix("fix-frontend-issues", "build_errors")
def test_frontend_builds():
    """Frontend build fails."""
    check("frontend")


@pytest.mark.p4
@pytest.mark.performance
@pytest.mark.fix("resolve-performance-issues", "log_sizes")
def test_logs_are_small():
    """Log files too large."""
    check("logs")
'''

INNER_FLAKY = '''
from pathlib import Path

import pytest

COUNTER = Path(__file__).with_name("calls.txt")


@pytest.mark.p1
@pytest.mark.backend
@pytest.mark.fix("fix-backend-issues", "api_errors")
def test_flaky_endpoint_answers():
    """Fails on its first call only, like a dropped packet; "always" in always.txt makes it fail every call."""
    calls = int(COUNTER.read_text()) + 1 if COUNTER.exists() else 1
    COUNTER.write_text(str(calls))
    if calls == 1 or Path(__file__).with_name("always.txt").exists():
        pytest.fail(f"observed a dropped connection on call {calls}, expected 200", pytrace=False)
'''


class Suite:
    """The inner suite in a pytester directory."""

    def __init__(self, pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch):
        self.pytester = pytester
        pytester.makeconftest(INNER_CONFTEST)
        pytester.makeini(INNER_INI)
        (pytester.path / "targets.toml").write_text('[prod]\nhost = "remote"\n')
        pytester.makepyfile(test_checks=INNER_CHECKS, test_flaky=INNER_FLAKY)
        self.fail()
        # Inner runs import fixtures / remediation from the repo, also in xdist workers.
        monkeypatch.syspath_prepend(str(MAIN))
        monkeypatch.setenv("PYTHONPATH", str(MAIN))
        for var in (
            "FOSSAWORK_ALERT_WEBHOOK",
            "FOSSAWORK_MAINTENANCE_UNTIL",
            "FOSSAWORK_TARGET",
            "FOSSAWORK_TARGET_FILE",
        ):
            monkeypatch.delenv(var, raising=False)
        monkeypatch.setenv("PAGERDUTY_ROUTING_KEY", "routing-key-0123456789")

    @property
    def path(self) -> Path:
        return self.pytester.path

    def fail(self, *names: str) -> None:
        """Make these checks (api, db, frontend, logs) fail on the next runs, and every other pass."""
        (self.path / "failing.json").write_text(json.dumps(list(names)))

    def run(self, *args: str) -> pytest.RunResult:
        return self.pytester.runpytest("test_checks.py", *args)


@pytest.fixture
def suite(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> Suite:
    """The inner health suite, every check passing until ``suite.fail(...)``."""
    return Suite(pytester, monkeypatch)


@dataclass
class Receiver:
    """A webhook on 127.0.0.1 that records each POSTed JSON body and answers like PagerDuty (202)."""

    url: str
    posts: list[dict] = field(default_factory=list)


@pytest.fixture
def receiver():
    """A recording webhook receiver in a thread, stopped after the test."""
    received = Receiver(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.posts.append(json.loads(body))
            answer = json.dumps({"status": "success", "message": "Event processed"}).encode()
            self.send_response(202)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args):  # keep the test output clean
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    received.url = f"http://127.0.0.1:{server.server_address[1]}/v2/enqueue"
    yield received
    server.shutdown()
    server.server_close()
    thread.join(5)


@pytest.fixture
def silent_receiver():
    """A URL whose port accepts connections (kernel backlog) but never answers: the read timeout case."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}/v2/enqueue"
    sock.close()
