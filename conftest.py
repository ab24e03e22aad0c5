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
    "remediation.catalog",
    "remediation.outcomes",
    "remediation.gate",
    "remediation.alerts",
    "remediation.metrics",
    "remediation.plugin",
]
