"""Database issues: the runbook's diagnose-database.py and its database detection rule.

Every probe is read-only (``mode=ro``); the long scans run under time budgets.
"""

import pytest

from fixtures.expect import depends_on, expect, observing
from fixtures.service import backend_account
from observe.db import SQLITE_HEADER, BudgetExceeded, DatabaseLocked, DatabaseUnavailable
from observe.system import filesystem_of

fix = pytest.mark.fix
pytestmark = pytest.mark.database


def _present(db):
    depends_on(db.exists, f"{db.path} does not exist (reported by test_database_file_exists)")


def _sqlite(db):
    """Skip deeper checks of a file that is not a SQLite database: one root cause, one red check."""
    _present(db)
    with observing(DatabaseUnavailable):
        header = db.header()
    depends_on(
        header == SQLITE_HEADER,
        f"{db.path} is not a SQLite database (reported by test_database_is_a_readable_sqlite_database)",
    )


def reading(db):
    """Query errors fail the check; a lock skips it (test_database_is_not_locked reports it); out of budget is
    inconclusive."""
    _sqlite(db)
    return observing(DatabaseUnavailable, inconclusive=(BudgetExceeded,), blocked=(DatabaseLocked,))


@pytest.mark.p1
@fix("recover-corrupted-database", "recover")
def test_database_file_exists(db):
    """Database file not found.

    Differs from the runbook: a missing file stays missing (the runbook's sqlite3.connect creates an empty one).
    """
    expect(db.exists, f"observed no file at {db.path}, expected the database file")


@pytest.mark.p1
@fix("fix-database-issues", "permissions", kb="backend_not_starting")
def test_database_file_is_readable(db):
    """Database file is not readable."""
    _present(db)
    expect(
        db.owner_can_read,
        f"observed {db.path}: {'a directory' if db.is_directory else db.describe_mode()}, "
        "expected a regular file its owner can read",
    )


@pytest.mark.p2
@fix("fix-database-issues", "permissions", kb="backend_not_starting")
def test_database_file_is_writable(target, db, service_account):
    """Database file is not writable.

    Beyond the runbook: for the account the backend runs as (fixes run as root and can leave root's files
    behind), and the database's -wal/-shm/-journal and directory too: SQLite creates and writes them.
    """
    _present(db)
    service_account = backend_account(service_account, target, db.path)
    paths = [*db.files(), db.path.parent]
    denied = [p for p in paths if not service_account.can_write(p)]
    expect(
        db.owner_can_write and not denied,
        f"observed {db.path}: {db.describe_mode()}"
        + (f"; not writable for {service_account.name}: {', '.join(map(str, denied))}" if denied else "")
        + f", expected the database, its sidecars and directory writable by {service_account.name}",
    )


@pytest.mark.p1
@fix("recover-corrupted-database", "recover")
def test_database_file_is_not_empty(db):
    """Database file is empty."""
    _present(db)
    size = db.size
    expect(size > 0 or db.is_directory, f"observed {db.path} of 0 bytes, expected a non-empty database")


@pytest.mark.p4
@fix("fix-database-issues", "vacuum")
def test_database_file_is_under_size_limit(on_host, db):
    """Database file is very large."""
    _present(db)
    size, limit = db.size, on_host.thresholds.db_max_bytes
    expect(size <= limit, f"observed {db.path} at {size:,} bytes, expected at most {limit:,} bytes")


@pytest.mark.p2
@fix("resolve-performance-issues", "disk_space")
def test_database_filesystem_has_ten_percent_free(on_host, db):
    """Database filesystem nearly full: the next write fails with "database or disk is full".

    Beyond the runbook, which measures only disk_path: the database's own filesystem is the one that must grow.
    """
    _present(db)
    space = filesystem_of(db.path)
    limit = on_host.thresholds.db_filesystem_free_percent
    expect(space.free_percent >= limit, f"observed {space.describe()}, expected at least {limit:g}% free")


@pytest.mark.p1
@fix("recover-corrupted-database", "recover")
def test_database_is_a_readable_sqlite_database(db):
    """Database error / cannot connect to database (not a database, unreadable schema or tables).

    The incident path: header, schema and one row of every table, in milliseconds whatever the file's size.
    """
    _present(db)
    with observing(DatabaseUnavailable, blocked=(DatabaseLocked,)):
        header = db.header()
        expect(
            header == SQLITE_HEADER or header == b"",
            f"observed header {header!r} in {db.path}, expected {SQLITE_HEADER!r} (not a SQLite database)",
        )
        for table in db.tables():
            db.query(f'SELECT * FROM "{table}" LIMIT 1')


@pytest.mark.p1
@fix("recover-corrupted-database", "recover")
def test_database_has_expected_tables(on_host, db):
    """Database has no tables."""
    with reading(db):
        tables = db.tables()
    missing = [t for t in on_host.db_tables if t not in tables]
    expect(not missing, f"observed tables {tables or 'none'} in {db.path}, missing {missing}")


@pytest.mark.p1
@fix("recover-corrupted-database", "recover")
def test_database_passes_quick_check(on_host, db):
    """Database corruption: PRAGMA quick_check finds errors.

    Differs from the runbook: the incident path runs quick_check under a budget (timeouts.quick_check); a database
    too big for it is reported as inconclusive, and the full integrity_check runs off the p1 path.
    """
    with reading(db):
        scan = db.scan("quick_check", on_host.timeouts.quick_check)
    expect(scan.lines == ["ok"], f"observed quick_check on {db.path}: {scan.summary()}, expected 'ok'")


@pytest.mark.p2
@fix("fix-database-issues", "reindex")
def test_database_passes_integrity_check(on_host, db):
    """Database integrity check failed.

    Differs from the runbook: runs under a budget (timeouts.integrity); out of budget is inconclusive, never a pass.
    """
    with reading(db):
        scan = db.scan("integrity_check", on_host.timeouts.integrity)
    expect(
        scan.lines == ["ok"],
        f"observed integrity_check on {db.path} ({scan.elapsed:.2f} s): {scan.summary()}, expected 'ok'",
    )


@pytest.mark.p2
@fix("escalate")
def test_database_foreign_keys_are_consistent(on_host, db):
    """Foreign key constraint violations."""
    with reading(db):
        scan = db.scan("foreign_key_check", on_host.timeouts.integrity)
    expect(
        not scan.lines,
        f"observed {len(scan.lines)} foreign key violations in {db.path} (table, rowid, parent, fk): "
        f"{scan.lines[:5]}, expected none",
    )


@pytest.mark.p2
@fix("fix-database-issues", "database_locked", kb="database_locked")
def test_database_is_not_locked(on_host, db):
    """Database is currently locked.

    Differs from the runbook: instead of taking the write lock itself (BEGIN IMMEDIATE), the probe asks the kernel
    who holds SQLite's lock bytes, so it can neither block the application nor be mistaken for a database error.
    """
    _present(db)
    holder = db.lock_holder()
    limit = on_host.timeouts.lock
    expect(
        holder is None, f"observed {db.path} locked by {holder and holder.describe()}, expected free within {limit:g} s"
    )


@pytest.mark.p3
@fix("resolve-performance-issues", "slow_database")
@pytest.mark.parametrize("table", ["work_orders", "dispensers"])
def test_database_counts_rows_quickly(on_host, db, table):
    """Slow query detected: SELECT COUNT(*) over work orders or dispensers."""
    limit = on_host.thresholds.slow_query_seconds
    with reading(db):
        depends_on(table in db.tables(), f"no table {table} (reported by test_database_has_expected_tables)")
        budget = max(limit * 2, 1.0)
        try:
            count, elapsed = db.timed_count(table, budget=budget)
            observed = f"SELECT COUNT(*) FROM {table} = {count} in {elapsed:.3f} s"
        except BudgetExceeded:  # stopped at twice the threshold: slow, not inconclusive
            elapsed, observed = budget, f"SELECT COUNT(*) FROM {table} still running after {budget:g} s (stopped)"
    expect(elapsed <= limit, f"observed {observed}, expected at most {limit:g} s")


@pytest.mark.p4
@fix("fix-database-issues", "vacuum")
def test_database_free_pages_are_under_ratio(on_host, db):
    """Database has many unused pages."""
    with reading(db):
        (free,), (total,) = db.query("PRAGMA freelist_count")[0], db.query("PRAGMA page_count")[0]
    ratio = on_host.thresholds.free_page_ratio
    expect(
        free <= total * ratio,
        f"observed {free} free of {total} pages ({free / max(total, 1):.0%}) in {db.path}, "
        f"expected at most {ratio:.0%}",
    )


@pytest.mark.p4
@fix("resolve-performance-issues", "slow_database")
def test_database_tables_are_under_large_table_rows(on_host, db):
    """Large table detected."""
    limit = on_host.thresholds.large_table_rows
    with reading(db):
        counts = {t: db.timed_count(t, budget=on_host.timeouts.integrity)[0] for t in db.tables()}
    large = {t: n for t, n in counts.items() if n > limit}
    expect(not large, f"observed large tables {large} in {db.path}, expected none above {limit} rows")
