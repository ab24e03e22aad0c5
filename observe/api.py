"""The backend's endpoints, probed once per run and asserted per check.

The runbook probes endpoints one by one with 5 s timeouts, so a hung API costs
20 s. Here the first check that needs the API gathers every probe
concurrently on one pooled session; the checks then assert on the stored
answers. Once the API has timed out, the probes that depend on it are not
sent again: a hung target costs one read timeout, not one per check.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets as random_secrets
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from observe import secrets
from observe.http import Answer, Http
from observe.profile import Profile

# Forged tokens the validate route must reject; each name is one test case.
BAD_TOKENS = ("missing", "malformed", "expired", "wrong_signature", "alg_none", "alg_confusion")


@dataclass
class Login:
    """The outcome of logging in as the profile's test user."""

    answer: Answer
    token: str | None
    user_id: str | None
    problem: str | None  # why there is no token, in one line


class Api:
    """Probes of one backend; every probe runs at most once per run."""

    def __init__(self, profile: Profile):
        self.profile = profile
        self.base = profile.api_url.rstrip("/")
        self.http = Http(profile.timeouts.connect, profile.timeouts.read, profile.verify_tls)
        self.password = profile.secret("password_env")
        self.jwt_secret = profile.secret("jwt_secret_env")
        secrets.register(self.password)
        secrets.register(self.jwt_secret)
        self._answers: dict[str, Answer] = {}
        self._login: Login | None = None
        self._lock = threading.Lock()
        self._gathered = False

    # -- probing ---------------------------------------------------------
    def url(self, endpoint: str, user_id: str | None = None) -> str:
        """Full URL of an endpoint key; {user_id} is filled from the login answer."""
        path = getattr(self.profile.endpoints, endpoint)
        if "{user_id}" in path:
            path = path.replace("{user_id}", user_id or "")
        return self.base + path

    def _hung(self) -> Answer | None:
        """The first timed-out answer, if the API has already timed out this run."""
        return next((a for a in self._answers.values() if a.kind == "timeout"), None)

    def _send(self, name: str, method: str, url: str, **kwargs) -> Answer:
        hung = self._hung()
        if hung is not None:
            # Not sent: the same API already timed out; report that observation instead of waiting again.
            answer = Answer(method=method, url=url, error=f"{hung.error} (API hung: not probed again)", kind="timeout")
        else:
            answer = self.http.request(method, url, **kwargs)
        self._answers[name] = answer
        return answer

    def _login_as(self, password: str) -> Answer:
        body = {"username": self.profile.test_user, "password": password}
        return self.http.request("POST", self.url("login"), json=body)

    def _do_login(self) -> Login:
        if not self.password:
            answer = Answer("POST", self.url("login"), error="not attempted")
            return Login(answer, None, None, f"no password: set {self.profile.password_env} or env_file")
        answer = self._login_as(self.password)
        self._answers["login"] = answer
        if answer.status != 200:
            return Login(answer, None, None, f"login answered {answer.error or answer.status}")
        data, problem = answer.json()
        if problem or not isinstance(data, dict) or not data.get("access_token"):
            return Login(answer, None, None, f"login answer has no access_token ({problem or answer.text(80)})")
        token = str(data["access_token"])
        secrets.register(token)
        user_id = data.get("user_id")
        return Login(answer, token, None if user_id is None else str(user_id), None)

    def gather(self) -> None:
        """Send every probe once: tokenless ones concurrently, then those that need the login token."""
        with self._lock:
            if self._gathered:
                return
            self._gathered = True
            first = {
                "health": lambda: self._send("health", "GET", self.url("health")),
                "login": self._do_login,
                "login_wrong": lambda: self._send_wrong_login(),
                **{f"validate_{kind}": (lambda kind=kind: self._send_bad_token(kind)) for kind in BAD_TOKENS},
            }
            with ThreadPoolExecutor(max_workers=len(first)) as pool:
                futures = {name: pool.submit(fn) for name, fn in first.items()}
                self._login = futures["login"].result()
                for future in futures.values():
                    future.result()
            login = self._login
            auth = {"Authorization": f"Bearer {login.token}"} if login.token else {}
            second = {
                "work_orders": ("GET", self.url("work_orders", login.user_id)),
                "dispensers": ("GET", self.url("dispensers", login.user_id)),
                "validate_valid": ("GET", self.url("validate")),
                "logout": ("POST", self.url("logout")),
            }
            with ThreadPoolExecutor(max_workers=len(second)) as pool:
                for future in [pool.submit(self._send, n, m, u, headers=auth) for n, (m, u) in second.items()]:
                    future.result()

    def _send_wrong_login(self) -> Answer:
        wrong = "wrong-" + random_secrets.token_hex(8)
        answer = self._send(
            "login_wrong", "POST", self.url("login"), json={"username": self.profile.test_user, "password": wrong}
        )
        return answer

    def _send_bad_token(self, kind: str) -> Answer:
        token = forge_token(kind, self.jwt_secret, self.profile.test_user)
        headers = {} if token is None else {"Authorization": f"Bearer {token}"}
        return self._send(f"validate_{kind}", "GET", self.url("validate"), headers=headers)

    # -- what checks read --------------------------------------------------
    def answer(self, name: str) -> Answer:
        """The stored answer of one probe (gathering all probes on first use)."""
        self.gather()
        return self._answers[name]

    def login(self) -> Login:
        self.gather()
        return self._login

    def latency_samples(self, count: int) -> list[Answer]:
        """``count`` sequential GETs of the health route, after the gathered probes (warm connection)."""
        self.gather()
        return [self._send(f"latency_{i}", "GET", self.url("health")) for i in range(count)]

    def close(self) -> None:
        self.http.close()


def _b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def forge_token(kind: str, jwt_secret: str | None, subject: str) -> str | None:
    """A token the backend must reject: missing (None), malformed, expired, wrongly signed, alg none, or HS/RS
    confusion."""
    import jwt  # PyJWT; imported here so that runs without auth checks never pay for it

    now = int(time.time())
    claims = {"sub": subject, "iat": now, "exp": now + 600}
    if kind == "missing":
        return None
    if kind == "malformed":
        return "invalid_token"
    if kind == "alg_none":
        return _b64({"alg": "none", "typ": "JWT"}) + "." + _b64(claims) + "."
    if kind == "alg_confusion":
        # Claims RS256 but is HMAC-signed with the shared secret: only a verifier that ignores the algorithm it
        # expects (the HS/RS confusion) accepts it.
        signing_input = _b64({"alg": "RS256", "typ": "JWT"}) + "." + _b64(claims)
        key = (jwt_secret or random_secrets.token_urlsafe(48)).encode()
        signature = base64.urlsafe_b64encode(hmac.new(key, signing_input.encode(), hashlib.sha256).digest())
        return signing_input + "." + signature.rstrip(b"=").decode()
    if kind == "wrong_signature":
        return jwt.encode(claims, random_secrets.token_urlsafe(48), algorithm="HS256")
    if kind == "expired":
        # Signed with the real secret when it is known, so only the expiry can make the backend reject it.
        key = jwt_secret or random_secrets.token_urlsafe(48)
        return jwt.encode({**claims, "iat": now - 7200, "exp": now - 3600}, key, algorithm="HS256")
    raise ValueError(kind)
