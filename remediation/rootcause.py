"""Root cause in any selection: a check skipped because a check outside the selection reports the cause.

``pytest -m p1`` on a database held under a lock skips the P1 database checks "(reported by
test_database_is_not_locked)", a P2 check that ``-m p1`` deselected: the incident would name the timeouts
and never the lock. Here every skip that names its reporting check (``depends_on`` / ``observing``) is
read; when that check was deselected, it runs after the selection, and the incident names it as the root
cause, with its own severity and evidence. Plain runs only: an xdist controller runs no checks itself.
"""

from __future__ import annotations

import re

import pytest

from remediation.results import ROOT_CAUSE

REPORTED_BY = re.compile(r"\(reported by (test_[\w\[\]\-.]+)\)")
_DESELECTED = pytest.StashKey[dict]()
_WANTED = pytest.StashKey[dict]()
_EXPLAINS = pytest.StashKey[list]()  # on a check run as a root cause: the skipped checks it explains


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_DESELECTED] = {}
    config.stash[_WANTED] = {}


def pytest_deselected(items: list[pytest.Item]) -> None:
    for item in items:
        item.config.stash[_DESELECTED].setdefault(item.name, item)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    report = yield
    if report.skipped and not hasattr(item.config, "workerinput"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        found = REPORTED_BY.search(reason)
        name = found.group(1) if found else None
        if name in item.config.stash[_DESELECTED]:
            item.config.stash[_WANTED].setdefault(name, []).append(item.nodeid)
    explains = item.stash.get(_EXPLAINS, None)
    if explains:
        report.user_properties.append((ROOT_CAUSE, explains))
    return report


@pytest.hookimpl(wrapper=True)
def pytest_runtestloop(session: pytest.Session):
    result = yield
    wanted = session.config.stash[_WANTED]
    deselected = session.config.stash[_DESELECTED]
    for name in list(wanted):
        item = deselected.pop(name)
        item.stash[_EXPLAINS] = sorted(set(wanted[name]))
        item.ihook.pytest_runtest_protocol(item=item, nextitem=None)
    return result
