"""Wires the suite's plugins; nothing else lives here."""

pytest_plugins = [
    "fixtures.target",
    "fixtures.api",
    "fixtures.db",
    "fixtures.logs",
    "fixtures.processes",
    "fixtures.system",
    "fixtures.frontend",
    "fixtures.browser",
    "remediation.contract",
    "remediation.results",
    "remediation.catalog",
    "remediation.gate",
    "remediation.notify.alerts",
    "remediation.notify.metrics",
    "remediation.plugin",
]
