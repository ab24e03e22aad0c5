"""The backend's endpoints, probed once per run and asserted per check.

The runbook probes endpoints one by one with 5 s timeouts, so a hung API costs
20 s. Here the first check that needs the API gathers every probe
concurrently on one pooled session; the checks then assert on the stored
answers. Once the API has timed out, the probes that depend on it are not
sent again: a hung target costs one read timeout, not one per check.

By default no probe can change the target. FossaWork V2's login writes (the
user's last-used time, its WorkFossa credentials re-encrypted into
user_credentials) and in production signs in to WorkFossa with them, so auth
is checked without logging in: the suite signs a short-lived token for the
test user with the backend's JWT secret, which it reads anyway; the protected
routes must accept it and refuse the bad-token family. The login route is
shown to exist by a request that cannot log anyone in (an empty body, refused
with 422 before any handler runs), the logout route by GET, which its router
refuses with 405 without running it.

Tokens with the same claims, signed with each published default secret, go to
the validate route beside the other read-only probes: the secret the suite
reads (environment, env_file) need not be the one the running process took.

A real login (``login_probe``) and a wrong password (``wrong_password_probe``)
are opt-ins. The probes that may write run one after another, once the
read-only ones have answered: the wrong password first, so that a backend
accepting any password stores the right one last; the login's session is
logged out at the end. A login waits ``timeouts.login`` (a production login
drives a browser to WorkFossa for 10-30 s), and only an API that answered the
read-only probes is worth that wait; its timeout says the login is slow, not
that the API hung.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets as random_secrets
import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from observe import secrets
from observe.db import user_id as stored_user_id
from observe.http import Answer, Http
from observe.profile import Profile

# Forged tokens the validate route must reject; each name is one test case.
BAD_TOKENS = ("missing", "malformed", "expired", "wrong_signature", "alg_none", "alg_confusion")
TOKEN_SECONDS = 300  # lifetime of the token the suite signs: one run's probes, with room for a slow one
# The Origin the bad-token and CORS probes come from: a site no deployment allows, so an answer granting it with
# credentials echoes any origin (FossaWork V2's 401 answers can).
FOREIGN_ORIGIN = "https://foreign-origin.invalid"
# The probes that ask for a foreign origin's access: a browser's preflight, and simple requests with and without a
# token (the bad-token probes, from that origin too, are the ones without).
CORS_PROBES = ("cors_preflight", "cors_with_token", *(f"validate_{kind}" for kind in BAD_TOKENS))
# Example and framework-default JWT secrets found in tutorials and .env templates, by a label that evidence can
# name: a backend signing with one is forgeable, and the value, if accepted, is its secret (never printed).
DEFAULT_SECRETS = {
    "generic placeholder 1": "secret",
    "generic placeholder 2": "changeme",
    "generic placeholder 3": "change-me",
    "generic placeholder 4": "supersecretkey",
    ".env template 1": "your-secret-key",
    ".env template 2": "your-secret-key-here",
    ".env template 3": "your-secret-key-here-change-in-production",
    ".env template 4": "your-secret-key-here-change-in-production-please",
    ".env template 5": "your_secret_key_here_change_in_production",
    "FastAPI tutorial": "09d25e094faa6ca2556c818166b7a9563b93f7099f6f0f4caa6cf63b88e8d3e7",
    "Django template": "django-insecure-change-me",
    "FossaWork V2 example .env": "fossawork-secret-key-change-in-production",
}
# Probes waiting timeouts.login instead of timeouts.read: their timeout says the login is slow, not the API hung.
LOGIN_PROBES = ("login_wrong", "login")
WRITES = (
    "writes on FossaWork V2: the user's last-used time and its WorkFossa credentials, re-encrypted; in production "
    "it signs in to WorkFossa"
)
LOGIN_OFF = f"not probed: login_probe is off (a login {WRITES}); opt in for a synthetic test user"
WRONG_PASSWORD_OFF = (
    "not probed: wrong_password_probe is off (FossaWork V2 forwards the password to WorkFossa: a failed login of a "
    "real account)"
)


@dataclass
class Login:
    """The outcome of logging in as the profile's test user (login_probe)."""

    answer: Answer
    token: str | None
    user_id: str | None
    problem: str | None  # why there is no token, in one line


@dataclass
class Bearer:
    """The token the protected probes carry: the login probe's, or one the suite signs with the JWT secret."""

    token: str | None
    user_id: str | None
    origin: str  # what the evidence says about where the token came from
    problem: str | None  # why there is no token, in one line


@dataclass(frozen=True)
class RouteProbe:
    """How a route's existence is asked: the stored answer to read and the statuses that mean 'no such route'."""

    answer: str
    missing: tuple[int, ...]


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
        self._bearer: Bearer | None = None
        self._test_user: tuple[str | None, str | None] = (None, None)  # (id, why unknown), found when gathering
        self._lock = threading.Lock()
        self._gathered = False

    # -- probing ---------------------------------------------------------
    def url(self, endpoint: str, user_id: str | None = None) -> str:
        """Full URL of an endpoint key; {user_id} is filled from the token's user."""
        path = getattr(self.profile.endpoints, endpoint)
        if "{user_id}" in path:
            path = path.replace("{user_id}", user_id or "")
        return self.base + path

    def _hung(self, login: bool = False) -> Answer | None:
        """The first timed-out answer, if the API has already timed out this run; a login's timeout only counts
        for the next login (the same slow route)."""
        # A copy: the probes of the first wave store their answers from other threads meanwhile.
        answers = list(self._answers.items())
        return next((a for n, a in answers if a.kind == "timeout" and (login or n not in LOGIN_PROBES)), None)

    def _send(self, name: str, method: str, url: str, **kwargs) -> Answer:
        login = name in LOGIN_PROBES
        hung = self._hung(login)
        if hung is not None:
            # Not sent: the same API already timed out; report that observation instead of waiting again.
            answer = Answer(method=method, url=url, error=f"{hung.error} (API hung: not probed again)", kind="timeout")
        else:
            read = self.profile.timeouts.login if login else self.profile.timeouts.read
            answer = self.http.request(method, url, read=read, **kwargs)
            if login and answer.kind == "timeout":
                answer.error += " (timeouts.login)"  # not the API's timeouts.read, which every other probe waits
        self._answers[name] = answer
        return answer

    def gather(self) -> None:
        """Send every probe once: the read-only ones concurrently, then the writing ones (opt-in) one after
        another, then those that need a token, then the logout of the probe's login."""
        with self._lock:
            if self._gathered:
                return
            self._gathered = True
            self._test_user = self._test_user_id()
            signed = self._signed()
            # Every route probe carries the valid token: FossaWork V2 answers 401 to unknown routes without one.
            headers = _authorization(signed)
            first = {
                "health": lambda: self._send("health", "GET", self.url("health")),
                # No username, no password: the framework refuses it (422) before the handler could log anyone in.
                "login_route": lambda: self._send("login_route", "POST", self.url("login"), json={}, headers=headers),
                **{f"validate_{kind}": (lambda kind=kind: self._send_bad_token(kind)) for kind in BAD_TOKENS},
                **{
                    f"default_secret[{label}]": (
                        lambda label=label, token=token: self._send_default_secret(label, token)
                    )
                    for label, token in self._default_secret_tokens().items()
                },
                # A browser's preflight before it sends a token from a foreign page: no credentials in it.
                "cors_preflight": lambda: self._send(
                    "cors_preflight",
                    "OPTIONS",
                    self.url("validate"),
                    headers={
                        "Origin": FOREIGN_ORIGIN,
                        "Access-Control-Request-Method": "GET",
                        "Access-Control-Request-Headers": "authorization",
                    },
                ),
            }
            with ThreadPoolExecutor(max_workers=len(first)) as pool:
                for future in [pool.submit(probe) for probe in first.values()]:
                    future.result()
            self._login = self._writing_probes()
            bearer = self._bearer = signed if self._login is None else _from_login(self._login)
            headers = _authorization(bearer)
            second = {
                "work_orders": ("GET", self.url("work_orders", bearer.user_id), headers),
                "dispensers": ("GET", self.url("dispensers", bearer.user_id), headers),
                "validate_valid": ("GET", self.url("validate"), headers),
                "cors_with_token": ("GET", self.url("validate"), headers | {"Origin": FOREIGN_ORIGIN}),
            }
            if self._login is None:
                # 405 from the router; the handler never runs
                second["logout_route"] = ("GET", self.url("logout"), headers)
            with ThreadPoolExecutor(max_workers=len(second)) as pool:
                for future in [pool.submit(self._send, n, m, u, headers=h) for n, (m, u, h) in second.items()]:
                    future.result()
            if self._login is not None and self._login.token:
                self._send("logout", "POST", self.url("logout"), headers=headers)  # ends the probe's own session

    def _writing_probes(self) -> Login | None:
        """The opt-in probes that may write, one after another: the wrong password, then the test user's login."""
        if self.profile.wrong_password_probe:
            wrong = "wrong-" + random_secrets.token_hex(8)
            body = {"username": self.profile.test_user, "password": wrong}
            self._send("login_wrong", "POST", self.url("login"), json=body)
        if not self.profile.login_probe:
            return None
        if not self.password:
            answer = Answer("POST", self.url("login"), error="not attempted")
            return Login(answer, None, None, f"no password: set {self.profile.password_env} or env_file")
        body = {"username": self.profile.test_user, "password": self.password}
        answer = self._send("login", "POST", self.url("login"), json=body)
        if answer.status != 200:
            return Login(answer, None, None, f"login answered {answer.error or answer.status}")
        data, problem = answer.json()
        if problem or not isinstance(data, dict) or not data.get("access_token"):
            return Login(answer, None, None, f"login answer has no access_token ({problem or answer.text(80)})")
        token = str(data["access_token"])
        secrets.register(token)
        user_id = data.get("user_id")
        return Login(answer, token, None if user_id is None else str(user_id), None)

    def _signed(self) -> Bearer:
        """A valid token for the test user, signed with the backend's JWT secret (nothing is sent for it)."""
        var, profile = self.profile.jwt_secret_env, self.profile
        origin = f"a token signed with {var} for {profile.test_user!r} (token_subject = {profile.token_subject})"
        user_id, unknown = self._test_user
        if not self.jwt_secret:
            return Bearer(None, user_id, origin, f"no token: {var} is unset (environment or env_file)")
        if self.profile.token_subject == "user_id" and user_id is None:
            return Bearer(None, None, origin, f"no token: token_subject is user_id and {unknown}")
        token = _sign(self._claims(user_id), self.jwt_secret)
        secrets.register(token)
        return Bearer(token, user_id, origin, None if user_id else unknown)

    def _claims(self, user_id: str | None) -> dict:
        """The claims of a valid token for the test user: 'sub' as the backend's own tokens carry it, and user_id."""
        now = int(time.time())
        subject = user_id if self.profile.token_subject == "user_id" else self.profile.test_user
        claims = {"sub": subject, "iat": now, "exp": now + TOKEN_SECONDS}
        return {**claims, "user_id": user_id} if user_id else claims

    def _test_user_id(self) -> tuple[str | None, str | None]:
        """(the test user's id, None) from the profile or, read-only, the database; else (None, why not)."""
        if self.profile.test_user_id:
            return self.profile.test_user_id, None
        if self.profile.host != "local":
            return None, "test_user_id is empty (host = 'remote': no database to read it from)"
        try:
            found = stored_user_id(self.profile.db_path, self.profile.test_user, self.profile.timeouts.lock)
        except sqlite3.Error as exc:
            return None, f"test_user_id is empty and {self.profile.db_path} could not be read ({exc})"
        if found is None:
            return None, f"test_user_id is empty and {self.profile.db_path} has no user {self.profile.test_user!r}"
        return found, None

    def _send_bad_token(self, kind: str) -> Answer:
        token = forge_token(kind, self.jwt_secret, self._claims(self._test_user[0]))
        headers = {"Origin": FOREIGN_ORIGIN} | ({} if token is None else {"Authorization": f"Bearer {token}"})
        return self._send(f"validate_{kind}", "GET", self.url("validate"), headers=headers)

    def _default_secret_tokens(self) -> dict[str, str]:
        """By label, a token with the claims of a valid one signed with each published default secret (nothing is
        sent for them)."""
        claims = self._claims(self._test_user[0])
        return {label: _sign(claims, key) for label, key in DEFAULT_SECRETS.items()}

    def _send_default_secret(self, label: str, token: str) -> Answer:
        headers = {"Authorization": f"Bearer {token}"}
        answer = self._send(f"default_secret[{label}]", "GET", self.url("validate"), headers=headers)
        if answer.ok:
            secrets.register(DEFAULT_SECRETS[label])  # accepted: it is the backend's own secret
        return answer

    # -- what checks read --------------------------------------------------
    def answer(self, name: str) -> Answer:
        """The stored answer of one probe (gathering all probes on first use)."""
        self.gather()
        return self._answers[name]

    def login(self) -> Login | None:
        """The login probe's outcome; None when login_probe is off."""
        self.gather()
        return self._login

    def default_secret_answers(self) -> dict[str, Answer]:
        """The validate route's answer to a token signed with each published default secret, by its label."""
        self.gather()
        return {label: self._answers[f"default_secret[{label}]"] for label in DEFAULT_SECRETS}

    def bearer(self) -> Bearer:
        """The token the protected probes carried (the login's with login_probe, else a signed one)."""
        self.gather()
        return self._bearer

    def route_probe(self, route: str) -> RouteProbe:
        """How the existence of the login, validate or logout route was asked."""
        if route == "logout" and self.profile.login_probe:
            return RouteProbe("logout", (404, 405))
        if route == "logout":
            return RouteProbe("logout_route", (404,))  # asked with GET: 405 says the POST route is there
        return RouteProbe({"login": "login_route", "validate": "validate_valid"}[route], (404, 405))

    def unprobed(self, endpoint: str) -> str | None:
        """Why a protected endpoint's answer says nothing about it (no token, no user id for its route), or None."""
        bearer = self.bearer()
        if not bearer.token:
            return bearer.problem
        if "{user_id}" in getattr(self.profile.endpoints, endpoint) and not bearer.user_id:
            return f"no user id for {{user_id}} in its route: {bearer.problem}"
        return None

    def latency_samples(self, count: int) -> list[Answer]:
        """``count`` sequential GETs of the health route, after the gathered probes (warm connection)."""
        self.gather()
        return [self._send(f"latency_{i}", "GET", self.url("health")) for i in range(count)]

    def close(self) -> None:
        self.http.close()


def _authorization(bearer: Bearer) -> dict[str, str]:
    return {"Authorization": f"Bearer {bearer.token}"} if bearer.token else {}


def _from_login(login: Login) -> Bearer:
    problem = None if login.token else "no token from login (reported by test_login_with_test_user_succeeds)"
    return Bearer(login.token, login.user_id, "a fresh token from login", problem)


def _b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def _sign(claims: dict, key: str, alg: str = "HS256") -> str:
    """A JWT of ``claims`` HMAC-SHA256-signed with ``key``, its header naming ``alg``.

    HS256 is one HMAC over two base64url segments: signed here, not with PyJWT, whose import (its RSA and EC
    algorithms load cryptography) cost a P1 run ~40 ms, more than all its API probes on a healthy backend.
    """
    signing_input = _b64({"alg": alg, "typ": "JWT"}) + "." + _b64(claims)
    signature = base64.urlsafe_b64encode(hmac.new(key.encode(), signing_input.encode(), hashlib.sha256).digest())
    return signing_input + "." + signature.rstrip(b"=").decode()


def forge_token(kind: str, jwt_secret: str | None, claims: dict) -> str | None:
    """A token the backend must reject, with the claims of a valid one: missing (None), malformed, expired, wrongly
    signed, alg none, or HS/RS confusion."""
    if kind == "missing":
        return None
    if kind == "malformed":
        return "invalid_token"
    if kind == "alg_none":
        return _b64({"alg": "none", "typ": "JWT"}) + "." + _b64(claims) + "."
    if kind == "alg_confusion":
        # Claims RS256 but is HMAC-signed with the shared secret: only a verifier that ignores the algorithm it
        # expects (the HS/RS confusion) accepts it.
        return _sign(claims, jwt_secret or random_secrets.token_urlsafe(48), alg="RS256")
    if kind == "wrong_signature":
        return _sign(claims, random_secrets.token_urlsafe(48))
    if kind == "expired":
        # Signed with the real secret when it is known, so only the expiry can make the backend reject it.
        now = int(time.time())
        return _sign({**claims, "iat": now - 7200, "exp": now - 3600}, jwt_secret or random_secrets.token_urlsafe(48))
    raise ValueError(kind)
