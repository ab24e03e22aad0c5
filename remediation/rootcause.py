"""Root cause in any selection: a check skipped or failed on a cause that another check reports.

``pytest -m p1`` on a database held under a lock skips the P1 database checks "(reported by
test_database_is_not_locked)", a P2 check that ``-m p1`` deselected: the incident would name the timeouts
and never the lock. Here every skip that names its reporting check (``depends_on`` / ``observing``) is
read, and every failure raised with its cause (``expect(..., cause=...)``: a backend down because its last
start died at import). When the reporting check was deselected, it runs after the selection, and the
incident names it as the root cause, with its own severity and evidence. A failure with a cause also offers
the cause's fix instead of its own: restarting a backend that cannot import only dies again. Scheduling
happens in plain runs only (an xdist controller runs no checks itself); the fix is named on workers too.
"""

from __future__ import annotations

import re

import pytest

from remediation.results import CAUSED_BY, ROOT_CAUSE, entry_of

REPORTED_BY = re.compile(r"\(reported by (test_[\w\[\]\-.]+)\)")
_DESELECTED = pytest.StashKey[dict]()
_WANTED = pytest.StashKey[dict]()
_EXPLAINS = pytest.StashKey[list]()  # on a check run as a root cause: the checks it explains


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_DESELECTED] = {}
    config.stash[_WANTED] = {}


def pytest_deselected(items: list[pytest.Item]) -> None:
    for item in items:
        item.config.stash[_DESELECTED].setdefault(item.name, item)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    report = yield
    name = None
    if report.skipped:
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        found = REPORTED_BY.search(reason)
        name = found.group(1) if found else None
    elif report.failed and call.excinfo is not None:
        # From the exception the check raised, never from its message, which may quote the target's answers.
        name = getattr(call.excinfo.value, "reported_by", None)
        cause = _item_named(item, name) if name else None
        if cause is not None:
            entry = entry_of(cause)
            fix = {key: entry[key] for key in ("script", "issue_type", "kb")}
            report.user_properties.append((CAUSED_BY, {"id": cause.nodeid, **fix}))
    if name in item.config.stash[_DESELECTED] and not hasattr(item.config, "workerinput"):
        item.config.stash[_WANTED].setdefault(name, []).append(item.nodeid)
    explains = item.stash.get(_EXPLAINS, None)
    if explains:
        report.user_properties.append((ROOT_CAUSE, explains))
    return report


def _item_named(item: pytest.Item, name: str) -> pytest.Item | None:
    """The collected check called ``name``, selected or not (None when it was not even collected)."""
    deselected = item.config.stash[_DESELECTED].get(name)
    return deselected or next((i for i in item.session.items if i.name == name), None)


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
