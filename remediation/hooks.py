"""Hookspecs of the remediation plugin; a team's conftest.py implements them to change mapping, fixing or reporting."""

from __future__ import annotations

import pytest


@pytest.hookspec(firstresult=True)
def pytest_fossawork_resolve_fix(item):
    """Return the Fix (script, issue_type, kb) of a health check; the default reads ``@pytest.mark.fix``.

    :param item: the health check's ``pytest.Item``.
    :returns: a ``remediation.scripts.Fix``, or None to fall through to the next implementation.
    """


@pytest.hookspec(firstresult=True)
def pytest_fossawork_remediate(config, fix, target_file, target, report_dir, run_id, result_file):
    """Run one fix under ``--remediate`` (the lock is held); the default runs the fix script with --execute.

    :param result_file: where the fix writes what it did (``remediation.actions.core.Remediation.result``).
    :returns: dict with ``command`` (str), ``exit_code`` (int) and ``output`` (str, redacted).
    """


@pytest.hookspec
def pytest_fossawork_write_report(config, incident, report_dir, stem):
    """Write the finished incident in one format as ``report_dir/stem.<ext>``; one implementation per format.

    :returns: the path written, or None.
    """
