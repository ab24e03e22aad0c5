"""Checks a deployment says do not apply (``not_applicable`` in its profile): N/A with the reason, never a pass.

A route this version of FossaWork does not have, a feature it does not use: the profile names the check and
why. The check is not run; its report is a skip whose reason starts with ``N/A:``, which the result model
keeps apart from other skips, the terminal summary lists, and the JSON and HTML reports show with the reason.
"""

from __future__ import annotations

import pytest

from observe.profile import not_applicable
from remediation.contract import is_health_check
from remediation.results import NOT_APPLICABLE


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    if not is_health_check(item):
        return
    from fixtures.target import item_target, targets

    reason = not_applicable(targets(item.config)[item_target(item)].declared, item.name)
    if reason is not None:
        pytest.skip(f"{NOT_APPLICABLE}{reason} (not_applicable in profile {item_target(item)!r})")
