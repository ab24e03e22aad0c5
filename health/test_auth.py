"""Authentication issues: the runbook's diagnose-authentication.py, plus the security checks it lacks."""

import pytest

from fixtures.expect import depends_on, expect, observing
from observe.api import BAD_TOKENS, CORS_PROBES, DEFAULT_SECRETS, FOREIGN_ORIGIN, LOGIN_OFF, WRONG_PASSWORD_OFF
from observe.db import DatabaseUnavailable
from observe.files import credential_store, existing_secret_files, exposed_secret_files

fix = pytest.mark.fix
pytestmark = pytest.mark.auth


def _reachable(api):
    """Skip behaviour checks when the backend itself is not answering (the endpoint checks report that)."""
    health = api.answer("health")
    depends_on(
        health.status is not None and health.status != 404 and health.status < 500,
        f"backend not answering: {health.describe()} (reported by test_api_endpoint_answers_200_with_json[health])",
    )


@pytest.mark.parametrize(
    "route",
    [
        pytest.param("login", marks=[pytest.mark.p1, fix("fix-backend-issues", "api_errors")]),
        pytest.param("validate", marks=[pytest.mark.p1, fix("fix-backend-issues", "api_errors")]),
        pytest.param("logout", marks=[pytest.mark.p3, fix("fix-backend-issues", "api_errors")]),
    ],
)
def test_auth_route_exists(api, died_at_import, route):
    """Auth endpoint not accessible.

    Differs from the runbook: asked with requests that change nothing and carry a valid token (FossaWork V2 answers
    401 to unknown routes without one): login with an empty body, which the framework refuses (422) before any
    handler runs; validate with the token; logout with GET, which its router refuses (405) without running it, or,
    with login_probe, by logging out the probe's own login.
    """
    if route != "login":
        bearer = api.bearer()
        depends_on(bearer.token, f"no token to tell 401 from 404: {bearer.problem}")
    probe = api.route_probe(route)
    answer = api.answer(probe.answer)
    missing = "/".join(map(str, probe.missing))
    expect(
        answer.status is not None and answer.status not in probe.missing and answer.status < 500,
        f"observed {answer.describe()}, expected the route to exist (not {missing}/5xx)",
        cause=died_at_import,
    )


@pytest.mark.p1
@fix("escalate")
def test_jwt_secret_is_at_least_32_characters(target):
    """JWT SECRET_KEY not configured, or too short (should be at least 32 characters)."""
    secret = target.secret("jwt_secret_env")
    unread = target.env_file_problem()
    where = f"{target.jwt_secret_env} (environment" + (f" or {unread or target.env_file})" if target.env_file else ")")
    expect(
        secret and len(secret) >= 32,
        f"observed {where} " + ("unset" if not secret else f"of {len(secret)} characters") + ", expected >= 32",
    )


@pytest.mark.p1
@fix("escalate")
def test_jwt_secret_is_not_a_known_default(target):
    """Security breach: the JWT secret is a published example value, so anyone can forge tokens."""
    secret = target.secret("jwt_secret_env")
    depends_on(secret, f"{target.jwt_secret_env} unset (reported by test_jwt_secret_is_at_least_32_characters)")
    expect(
        secret.strip().lower() not in DEFAULT_SECRETS.values(),
        f"observed {target.jwt_secret_env} equal to a published example secret, expected a random one",
    )


@pytest.mark.p1
@fix("escalate")
def test_tokens_signed_with_default_secrets_are_refused(api):
    """Security breach: the backend accepts tokens signed with a published example secret, so anyone can forge them.

    Differs from the runbook: asks the running backend, read-only, whatever file or environment its secret came
    from; each token carries the claims of a valid one for the test user.
    """
    _reachable(api)
    accepted = {label: a for label, a in api.default_secret_answers().items() if a.ok}
    if not accepted:
        # A refusal proves something only where the route accepts a valid token.
        valid = api.answer("validate_valid")
        depends_on(
            valid.status == 200,
            f"no valid token accepted either: {valid.describe()} (reported by test_token_from_login_validates)",
        )
    expect(
        not accepted,
        f"observed {'; '.join(a.describe() for a in accepted.values())} to a token signed with the published "
        f"example key labelled {', '.join(map(repr, accepted))} (observe.api.DEFAULT_SECRETS), expected 401 or 403",
    )


@pytest.mark.p1
@fix("fix-backend-issues", "api_errors")
def test_login_with_test_user_succeeds(api, died_at_import, write_locked):
    """Login failures: login endpoint returning server error or not found.

    Differs from the runbook: only with login_probe, since a login writes (see README); logs in as the profile's
    test user, whose password comes from the environment, and expects 200 (a 401 there means the credentials are
    wrong, which the engineer must know too). Not probed or failing, it names a write lock another process holds
    on the database: in WAL mode that lock stops every login and no read.
    """
    depends_on(api.profile.login_probe, LOGIN_OFF, cause=write_locked)
    login = api.login()
    expect(
        login.token,
        f"observed {login.answer.describe()}: {login.problem}, expected 200 with an access_token for "
        f"{api.profile.test_user!r} within timeouts.login = {api.profile.timeouts.login:g} s",
        cause=(died_at_import, write_locked),
    )


@pytest.mark.p1
@fix("escalate")
def test_login_rejects_wrong_password(api):
    """Security breach: login answers 200 to a wrong password.

    Differs from the runbook: only with wrong_password_probe, since FossaWork V2 forwards the password to WorkFossa.
    """
    depends_on(api.profile.wrong_password_probe, WRONG_PASSWORD_OFF)
    _reachable(api)
    answer = api.answer("login_wrong")
    # Without an answer nothing says whether the wrong password would have been accepted.
    depends_on(answer.status is not None, f"no answer to the wrong password: {answer.describe()}")
    # Only acceptance is a breach here; a 5xx or 404 is reported by test_auth_route_exists[login].
    expect(not 200 <= answer.status < 300, f"observed {answer.describe()} for a wrong password, expected 401")


@pytest.mark.p1
@fix("fix-backend-issues", "api_errors")
def test_token_from_login_validates(api, died_at_import):
    """Token validation errors: a fresh token from login is not accepted.

    Differs from the runbook: without login_probe the token is one the suite signs with the backend's JWT secret
    for the test user, as login would issue it (token_subject says what its 'sub' holds).
    """
    bearer = api.bearer()
    depends_on(bearer.token, bearer.problem)
    answer = api.answer("validate_valid")
    expect(
        answer.status == 200, f"observed {answer.describe()} with {bearer.origin}, expected 200", cause=died_at_import
    )


@pytest.mark.p1
@fix("escalate")
@pytest.mark.parametrize("kind", BAD_TOKENS)
def test_validate_rejects_bad_token(api, kind):
    """Token validation returning server error or accepting an invalid token (security breach).

    Differs from the runbook: its check calls /api/auth/validate without a token and expects 200; a validate
    route must answer 401 (or 403) to a missing, malformed, expired, wrongly signed, alg-none or HS/RS-confused token.
    """
    _reachable(api)
    answer = api.answer(f"validate_{kind}")
    depends_on(answer.status not in (404, 405), "no validate route (reported by test_auth_route_exists[validate])")
    expect(answer.status in (401, 403), f"observed {answer.describe()} for a {kind} token, expected 401 or 403")


@pytest.mark.p1
@fix("escalate")
def test_api_does_not_allow_any_origin_with_credentials(api):
    """Security breach: the API answers Access-Control-Allow-Origin: * together with credentials.

    Differs from the runbook: also when it echoes a foreign Origin with credentials, as FossaWork V2's 401 answers
    can; asked by a preflight from that origin and by its simple requests with and without a token.
    """
    _reachable(api)
    foreign = [api.answer(name) for name in CORS_PROBES]
    depends_on(
        any(a.status is not None for a in foreign),
        f"no answer to a foreign Origin: {foreign[0].describe()} (reported by test_api_endpoint_answers_200_with_json)",
    )
    bad = [
        a
        for a in [*map(api.answer, ("health", "login_route", "validate_valid")), *foreign]
        if a.headers.get("access-control-allow-origin") in ("*", FOREIGN_ORIGIN)
        and a.headers.get("access-control-allow-credentials", "").lower() == "true"
    ]
    expect(
        not bad,
        f"observed {'; '.join(a.describe() for a in bad)} allowing "
        + ", ".join(sorted({a.headers["access-control-allow-origin"] for a in bad}))
        + " with credentials, expected neither '*' nor an origin echoed",
    )


@pytest.mark.p2
@fix("fix-automation-issues", "credential_issues")
def test_credential_store_holds_credentials(on_host, db, api):
    """Credentials directory not found, not readable or writable, or no credential files found.

    Differs from the runbook: with login_probe, the test user's own row, which that login writes, does not count.
    """
    if on_host.credentials_dir:
        store = credential_store(on_host.credentials_dir)
        expect(
            store.usable,
            f"observed {store.describe()}, expected a directory its owner can read and write, holding credential files",
        )
    else:
        table = on_host.credentials_table
        depends_on(table, "the profile names no credential store (credentials_dir and credentials_table empty)")
        own = api.login().user_id if on_host.login_probe and api.login() else None
        with observing(blocked=(DatabaseUnavailable,)):  # an unreadable database is reported by its own checks
            rows = db.stored_credentials(table, excluding_user=own)
        besides = f" besides {on_host.test_user!r}'s (written by login_probe)" if own else ""
        expect(rows > 0, f"observed {rows} rows{besides} in table {table!r} of {db.path}, expected stored credentials")


@pytest.mark.p1
@fix("fix-automation-issues", "credential_issues")
def test_secret_files_are_not_readable_by_others(on_host):
    """Security breach: credentials, the .env file or the database are readable by group or others."""
    present = existing_secret_files(on_host)
    depends_on(
        present, f"no secret file to look at: {on_host.db_path} is missing (reported by test_database_file_exists)"
    )
    exposed = exposed_secret_files(on_host)
    expect(
        not exposed,
        f"observed group/other permissions on {', '.join(m.describe() for m in exposed)}, "
        "expected owner-only (0600/0700)",
    )
