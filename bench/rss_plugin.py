"""A pytest plugin for the benchmark: at the end of the run, writes its peak RSS (MiB) to $FOSSAWORK_BENCH_RSS.

Loaded with ``-p rss_plugin`` and ``bench/`` on PYTHONPATH, so that a pytest run reports the memory of its own
process image (see ``run._rss_mib``), not the parent's carried-over ``ru_maxrss``.
"""

import os

from run import _rss_mib


def pytest_unconfigure(config) -> None:
    path = os.environ.get("FOSSAWORK_BENCH_RSS")
    if path:
        with open(path, "w", encoding="utf-8") as out:
            out.write(f"{_rss_mib():.1f}\n")
