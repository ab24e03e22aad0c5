"""Frontend issues: the runbook's diagnose-frontend.py and the frontend_build_errors knowledge-base entry."""

from urllib.parse import urlsplit

import pytest

from fixtures.expect import depends_on, expect

fix = pytest.mark.fix
pytestmark = pytest.mark.frontend


@pytest.mark.p1
@fix("fix-frontend-issues", "server_not_running")
def test_frontend_page_answers_200_with_html(frontend):
    """Page not loading: cannot connect to frontend server, connection timeout, or no valid HTML."""
    page = frontend.page()
    html = b"<html" in page.body[:65536].lower()
    expect(
        page.status == 200 and html,
        f"observed {page.describe()}"
        + (f", body {page.text(80)!r}" if page.status is not None else "")
        + ", expected 200 with an HTML document",
    )


@pytest.mark.p2
@fix("fix-frontend-issues", "server_not_running")
def test_frontend_dev_server_is_running(on_host, processes):
    """No frontend development server process found."""
    found = processes.matching(on_host.frontend_process, on_host.frontend_cwd)
    where = f" with cwd {on_host.frontend_cwd}" if on_host.frontend_cwd else ""
    expect(found, f"observed no process with {on_host.frontend_process!r} in its command line{where}, expected one")


@pytest.mark.p3
@fix("fix-frontend-issues", "server_not_running")
def test_frontend_dev_server_is_not_duplicated(on_host, processes):
    """Multiple frontend processes found.

    Differs from the runbook: counts servers (processes listening on a port) of this frontend (run in its
    directory or listening on its URL's port), not command lines: a ``vite build`` or another project's Vite on
    the same host is not a second dev server.
    """
    url = urlsplit(on_host.frontend_url)
    port = url.port or (443 if url.scheme == "https" else 80)
    found = processes.servers(on_host.frontend_process, on_host.frontend_cwd or on_host.frontend_dir, port)
    depends_on(found, "no frontend server to count (reported by test_frontend_dev_server_is_running)")
    expect(
        len(found) <= 1,
        f"observed {len(found)} frontend servers ({'; '.join(p.describe() for p in found)}), expected one",
    )


@pytest.mark.p3
@fix("fix-frontend-issues", "dependency_issues", kb="frontend_build_errors")
def test_frontend_dependencies_are_installed(npm_ls_run):
    """Missing npm dependencies (npm ls reports problems)."""
    expect(npm_ls_run.returncode == 0, f"observed {npm_ls_run.evidence()}, expected exit 0")


@pytest.mark.p3
@fix("fix-frontend-issues", "build_errors", kb="frontend_build_errors")
def test_frontend_typescript_compiles(tsc_run):
    """TypeScript compilation errors found (tsc --noEmit)."""
    expect(tsc_run.returncode == 0, f"observed {tsc_run.evidence()}, expected exit 0")


@pytest.mark.p3
@fix("fix-frontend-issues", "build_errors", kb="frontend_build_errors")
def test_frontend_build_succeeds(build_run):
    """npm run build fails.

    Differs from the runbook: the build output goes to a temporary directory, so the check leaves dist/ untouched.
    """
    expect(build_run.returncode == 0, f"observed {build_run.evidence()}, expected exit 0")


@pytest.mark.p1
@fix("escalate")
def test_frontend_bundle_contains_no_secret(target, frontend):
    """Security breach: a secret (the JWT secret, the test user's password) is served in the frontend's scripts."""
    names = {name: target.secret(name) for name in ("jwt_secret_env", "password_env")}
    depends_on(
        any(names.values()),
        f"no secret to look for: {target.jwt_secret_env} and {target.password_env} unset "
        "(reported by test_jwt_secret_is_at_least_32_characters)",
    )
    page = frontend.page()
    depends_on(
        page.ok,
        f"no page to read scripts from: {page.describe()} (reported by test_frontend_page_answers_200_with_html)",
    )
    scripts = frontend.scripts()
    depends_on(scripts, f"no same-origin script in {page.url}: nothing served to search")
    leaks = [
        f"{getattr(target, name)} in {script.url}"
        for script in scripts
        for name, value in names.items()
        if value and value.encode() in script.body
    ]
    expect(
        not leaks,
        f"observed the value of {', '.join(leaks)} (of {len(scripts)} scripts read), expected no secret in the bundle",
    )
