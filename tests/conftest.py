"""Self-tests: pytester for plugin behaviour, the sandbox for real faults."""

pytest_plugins = ["pytester"]
