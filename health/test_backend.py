"""Backend API issues: the runbook's diagnose-backend.py and its error-rate detection rule."""

from datetime import timedelta
from urllib.parse import urlparse

import pytest

from fixtures.expect import depends_on, expect, observing
from fixtures.service import backend_account
from observe.db import SQLITE_HEADER, DatabaseLocked, DatabaseUnavailable

fix = pytest.mark.fix
pytestmark = pytest.mark.backend

CRITICAL_PATTERNS = [
    pytest.param("ConnectionError", marks=fix("fix-backend-issues", "api_errors"), id="ConnectionError"),
    pytest.param("DatabaseError", marks=fix("fix-backend-issues", "database_issues"), id="DatabaseError"),
    pytest.param("TimeoutError", marks=fix("fix-backend-issues", "performance_issues"), id="TimeoutError"),
    pytest.param("MemoryError", marks=fix("fix-backend-issues", "memory_issues"), id="MemoryError"),
]


@pytest.mark.parametrize(
    "endpoint",
    [
        pytest.param(
            "health", marks=[pytest.mark.p1, fix("fix-backend-issues", "api_errors", kb="backend_not_starting")]
        ),
        pytest.param("work_orders", marks=[pytest.mark.p2, fix("fix-backend-issues", "api_errors")]),
        pytest.param("dispensers", marks=[pytest.mark.p2, fix("fix-backend-issues", "api_errors")]),
    ],
)
def test_api_endpoint_answers_200_with_json(api, died_at_import, endpoint):
    """API endpoints returning 500 errors, connection refused, connection timeouts.

    Differs from the runbook: protected routes are called with the test user's token, as the application requires;
    a backend that is not running because its last start died at import is that import error's (escalate), not a
    restart's.
    """
    if endpoint != "health":
        unprobed = api.unprobed(endpoint)
        depends_on(unprobed is None, f"protected route: {unprobed}")
    answer = api.answer(endpoint)
    _, not_json = answer.json()
    expect(
        answer.status == 200 and not not_json,
        f"observed {answer.describe()}"
        + (f", body {not_json}" if answer.status == 200 else f", body {answer.text()!r}" if answer.body else "")
        + ", expected 200 with a JSON body",
        cause=died_at_import,
    )


@pytest.mark.p3
@fix("escalate", kb="health_endpoint_blind")
def test_health_endpoint_sees_the_database(on_host, api, db):
    """Health endpoint answers 200 while the database is broken: monitors show green while requests fail.

    Beyond the runbook: FossaWork V2's /health is static and never opens the database. A broken database is one
    that is missing, is not SQLite or lacks the expected tables (the database checks say which); a locked one is
    the lock check's.
    """
    health = api.answer("health")
    depends_on(health.status == 200, f"health route: {health.describe()} (reported by the endpoint checks)")
    with observing(blocked=(DatabaseLocked,)):
        broken = _database_problem(on_host, db)
    expect(not broken, f"observed {health.describe()} while {broken}, expected the health route to fail with it")


def _database_problem(on_host, db) -> str | None:
    """What makes the database unusable for the application, or None; a lock raises DatabaseLocked."""
    try:
        if db.header() != SQLITE_HEADER:
            return f"{db.path} is not a SQLite database (or is empty)"
        missing = sorted(set(on_host.db_tables) - set(db.tables()))
    except DatabaseLocked:
        raise
    except DatabaseUnavailable as exc:
        return str(exc)
    return f"{db.path} lacks tables {', '.join(missing)}" if missing else None


@pytest.mark.p1
@fix("fix-backend-issues", "api_errors", kb="backend_not_starting")
def test_backend_process_is_running(on_host, processes, died_at_import):
    """No backend (uvicorn) process found.

    Beyond the runbook: when its last start died at import, that import error is named as the cause (escalate).
    """
    found = processes.matching(on_host.backend_process, on_host.backend_cwd)
    where = f" with cwd {on_host.backend_cwd}" if on_host.backend_cwd else ""
    expect(
        found,
        f"observed no process with {on_host.backend_process!r} in its command line{where}, expected one",
        cause=died_at_import,
    )


@pytest.mark.p2
@fix("fix-backend-issues", "api_errors", kb="backend_not_starting")
def test_backend_process_is_not_duplicated(on_host, processes):
    """Multiple backend processes found.

    Differs from the runbook: up to backend_workers top-level processes are normal (uvicorn --workers).
    """
    found = processes.matching(on_host.backend_process, on_host.backend_cwd)
    depends_on(found, "no backend process to count (reported by test_backend_process_is_running)")
    expect(
        len(found) <= on_host.backend_workers,
        f"observed {len(found)} backend processes ({'; '.join(p.describe() for p in found)}), "
        f"expected at most backend_workers = {on_host.backend_workers}",
    )


def _backend_pid(on_host, processes) -> int:
    found = processes.matching(on_host.backend_process, on_host.backend_cwd)
    depends_on(found, "no backend process to measure (reported by test_backend_process_is_running)")
    return found[0].pid


@pytest.mark.p3
@fix("fix-backend-issues", "performance_issues")
def test_backend_process_cpu_is_under_threshold(on_host, processes):
    """Backend process high CPU."""
    pid = _backend_pid(on_host, processes)
    cpu = processes.cpu_percent(pid)
    limit = on_host.thresholds.process_cpu_percent
    expect(cpu is not None and cpu <= limit, f"observed backend pid {pid} at {cpu}% CPU, expected at most {limit:g}%")


@pytest.mark.p3
@fix("fix-backend-issues", "memory_issues")
def test_backend_process_memory_is_under_threshold(on_host, processes):
    """Backend process high memory."""
    pid = _backend_pid(on_host, processes)
    memory = processes.memory_percent(pid)
    limit = on_host.thresholds.process_memory_percent
    expect(
        memory is not None and memory <= limit,
        f"observed backend pid {pid} using {memory if memory is None else round(memory, 2)}% of memory, "
        f"expected at most {limit:g}%",
    )


@pytest.mark.p3
@fix("escalate", kb="backend_not_starting")
def test_backend_error_log_exists(logs):
    """Backend error log file not found."""
    files, problems = logs.files("backend_errors")
    expect(
        files,
        f"observed no file matching {list(logs.profile.logs.backend_errors)} under {logs.root}"
        + (f" ({'; '.join(problems)})" if problems else "")
        + ", expected the backend error log",
    )


@pytest.mark.p3
@fix("escalate", kb="log_source_silent")
def test_active_logs_have_entries_in_their_window(on_host, logs, log_activity):
    """Logs stopped: a log the application always writes holds no recent entry (rotated aside, logging moved).

    Beyond the runbook: the checks that count errors in such a log would pass on nothing; [logs] active names
    the groups the application writes all the time (error-only logs are empty on a healthy system).
    """
    depends_on(log_activity, "no log group is declared active ([logs] active): nothing to expect entries in")
    silent: dict[str, list[str]] = {}  # evidence -> the groups it holds for: groups often share the general log
    for group, activity in log_activity.items():
        if activity.silent:
            silent.setdefault(activity.evidence(logs.root), []).append(group)
    minutes = on_host.thresholds.log_silence_minutes
    expect(
        not silent,
        f"observed no entry in the last {minutes:g} min in "
        + " | ".join(f"{', '.join(groups)} ({evidence})" for evidence, groups in silent.items())
        + f" under {logs.root}, expected the application's lines in every active log group ({', '.join(log_activity)})",
    )


def _heard(log_activity, group: str) -> None:
    """Skip a check that counts entries of ``group`` when that group is active and silent: it would observe
    nothing, and the silence is the finding."""
    activity = log_activity.get(group)
    depends_on(
        activity is None or not activity.silent,
        f"the {group} logs hold no recent entry (reported by test_active_logs_have_entries_in_their_window)",
    )


@pytest.mark.p3
@fix("fix-backend-issues", "api_errors")
def test_backend_error_log_has_few_recent_errors(on_host, logs, log_activity):
    """High error rate: recent errors in the backend error log.

    Differs from the runbook: "recent" means inside a time window, not "more than 5 of the last 10 lines".
    """
    minutes = on_host.thresholds.backend_errors_window_minutes
    tail = logs.since("backend_errors", timedelta(minutes=minutes), keep=lambda e: e.is_error)
    depends_on(tail.files, "no backend error log (reported by test_backend_error_log_exists)")
    _heard(log_activity, "backend_errors")
    errors = tail.entries
    limit = on_host.thresholds.backend_errors_max
    newest = f"; newest: {errors[-1].message[:120]!r}" if errors else ""
    expect(
        len(errors) <= limit,
        f"observed {len(errors)} errors in the last {minutes:g} min ({tail.evidence()}{newest}), "
        f"expected at most {limit}",
    )


@pytest.mark.p2
@pytest.mark.parametrize("pattern", CRITICAL_PATTERNS)
def test_backend_error_log_has_no_critical_error_pattern(on_host, logs, log_activity, pattern):
    """Critical error pattern found (ConnectionError, DatabaseError, TimeoutError, MemoryError).

    Differs from the runbook: searched in the error window, not only in the last 10 lines.
    """
    minutes = on_host.thresholds.backend_errors_window_minutes
    tail = logs.since("backend_errors", timedelta(minutes=minutes), keep=lambda e: pattern in e.message)
    depends_on(tail.files, "no backend error log (reported by test_backend_error_log_exists)")
    _heard(log_activity, "backend_errors")
    hits = tail.entries
    expect(
        not hits,
        f"observed {len(hits)} entries with {pattern} in the last {minutes:g} min"
        + (f", newest at {hits[-1].timestamp:%Y-%m-%d %H:%M:%S} UTC: {hits[-1].message[:160]!r}" if hits else "")
        + f" ({tail.evidence()}), expected none",
    )


@pytest.mark.p2
@fix("escalate", kb="backend_not_starting")
def test_backend_logs_show_no_import_errors(on_host, startup_imports, log_activity):
    """Import errors in logs (backend not starting).

    Beyond the runbook: also in what the service manager captured of the backend's last start
    (backend_output), where a crash at import leaves its only traceback; the checks that find the backend down
    name this one as their cause.
    """
    found = startup_imports()
    if not found.output_read:  # nothing captured to read: the startup logs are all this check observes
        _heard(log_activity, "startup")
    depends_on(found.observed, f"nothing to read: {found.evidence}")
    expect(
        not found.lines,
        f"observed {len(found.lines)} import errors in the last "
        f"{on_host.thresholds.backend_errors_window_minutes:g} min"
        + (f", newest: {found.lines[-1][:160]!r}" if found.lines else "")
        + f" ({found.evidence}), expected none",
    )


@pytest.mark.p2
@fix("escalate", kb="backend_not_starting")
def test_logs_are_writable_by_the_service_user(on_host, logs, service_account):
    """Logs not writable by the backend (a file or directory left to root by a fix or a deploy).

    Beyond the runbook: FossaWork V2 reopens (truncates) its log files at every start, under its own account; a
    log or log directory it cannot write stops the next start.
    """
    service_account = backend_account(service_account, on_host, on_host.log_dir)
    files, problems = logs.files("all")
    depends_on(files, f"no log file to judge: {'; '.join(problems) or 'no file matches [logs] all'}")
    paths = sorted({*files, *(f.parent for f in files)})
    denied = [p for p in paths if not service_account.can_write(p)]
    expect(
        not denied,
        f"observed {', '.join(map(str, denied[:5]))} not writable for {service_account.name} "
        f"(uid {service_account.uid}), expected every log and log directory writable for it",
    )


@pytest.mark.p1
@fix("escalate", kb="backend_not_starting")
def test_api_port_is_held_by_the_backend(on_host, processes):
    """Port 8000 not responding: port already in use by another process."""
    url = urlparse(on_host.api_url)
    depends_on(url.hostname in ("localhost", "127.0.0.1", "::1"), f"the API is on another host ({url.hostname})")
    port = url.port or (443 if url.scheme == "https" else 80)
    backend = {p.pid for p in processes.matching(on_host.backend_process, on_host.backend_cwd)}
    backend |= {child for pid in backend for child in processes.descendants(pid)}
    holder = processes.listener(port, likely=backend)
    depends_on(holder is not None, f"nothing listens on port {port} (reported by test_backend_process_is_running)")
    owner = processes.procs.get(holder)
    expect(
        holder in backend,
        f"observed port {port} held by {owner.describe() if owner else f'pid {holder}'}, "
        f"expected the backend ({on_host.backend_process!r})",
    )


@pytest.mark.p2
@fix("fix-backend-issues", "api_errors")
def test_error_logs_hold_few_errors_in_the_last_hour(on_host, logs, log_activity):
    """High error rate detected: more than 50 errors in the last hour across logs/errors.

    Differs from the runbook: counts entries timestamped inside the window, not every line of recently touched files.
    """
    _heard(log_activity, "errors")
    minutes = on_host.thresholds.error_rate_window_minutes
    tail = logs.since("errors", timedelta(minutes=minutes), keep=lambda e: e.is_error)
    depends_on(tail.files, f"no error log to count in: {tail.evidence()} (reported by test_backend_error_log_exists)")
    errors = tail.entries
    limit = on_host.thresholds.error_rate_max
    expect(
        len(errors) <= limit,
        f"observed {len(errors)} errors in the last {minutes:g} min ({tail.evidence()}), expected at most {limit}",
    )
