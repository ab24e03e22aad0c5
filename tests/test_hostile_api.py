"""An API answering the wrong thing (HTML, invalid JSON, nothing) fails the endpoint check with the reason."""

from __future__ import annotations

import pytest
from hostile_servers import HostileServer, assert_ran_cleanly, offline_profile, run_suite, write_targets

from observe.http import Http

BODIES = [
    pytest.param("text/html", b"<!doctype html><html><body>Bad Gateway</body></html>", "not JSON", id="html"),
    pytest.param("application/json", b'{"status": "ok",', "not JSON", id="invalid-json"),
    pytest.param("application/json", b"", "empty body", id="empty-body"),
]


@pytest.mark.parametrize(("content_type", "body", "reason"), BODIES)
def test_answer_json_names_why_a_body_is_not_json(content_type, body, reason):
    client = Http(0.5, 1.0)
    try:
        with HostileServer("answer", content_type=content_type, body=body) as server:
            answer = client.request("GET", server.url + "/api/health")
    finally:
        client.close()
    value, problem = answer.json()
    assert (answer.status, value) == (200, None)
    assert reason in problem and "\n" not in problem


@pytest.mark.parametrize(("content_type", "body", "reason"), BODIES)
def test_a_run_against_an_api_answering_garbage_fails_with_the_reason(tmp_path, content_type, body, reason):
    with HostileServer("answer", content_type=content_type, body=body) as server:
        targets = write_targets(tmp_path / "t.toml", "t", offline_profile(tmp_path, server.url))
        run = run_suite(
            targets,
            "t",
            "-m",
            "backend or auth",
            "-k",
            "api_endpoint or login",
            env={"FOSSAWORK_TEST_PASSWORD": "not-the-real-one", "FOSSAWORK_LOGIN_PROBE": "true"},
        )
    assert_ran_cleanly(run)
    outcome, message = run.cases["test_api_endpoint_answers_200_with_json[health]"]
    assert outcome == "failed" and reason in message, message
    outcome, message = run.cases["test_login_with_test_user_succeeds"]
    assert outcome == "failed" and "no access_token" in message, message


@pytest.mark.parametrize(("no_proxy", "via"), [("", b"proxy"), ("127.0.0.1", b"direct")])
def test_a_proxy_the_environment_names_carries_the_probes_unless_no_proxy_covers_the_host(monkeypatch, no_proxy, via):
    # As requests did before it: a host that reaches its alert receiver only through a proxy keeps paging.
    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    with HostileServer("answer", body=b"direct") as target, HostileServer("answer", body=b"proxy") as proxy:
        monkeypatch.setenv("http_proxy", proxy.url)
        monkeypatch.setenv("no_proxy", no_proxy)
        client = Http(0.5, 1.0)
        try:
            answer = client.request("GET", target.url + "/api/health")
        finally:
            client.close()
    assert (answer.status, answer.body) == (200, via), answer.describe()
