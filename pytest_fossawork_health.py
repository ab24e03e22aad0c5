"""The suite as an installed pytest plugin: the ``pytest11`` entry point ``fossawork-health``.

pytest reads its command line once before it loads any conftest.py, and takes the value of an option it does
not know yet for a test path: ``--target-file PATH`` (``--report-dir``, ``--prometheus-textfile``, ...) written
with a space made pytest choose its rootdir from PATH once PATH existed, miss this checkout's pyproject.toml
and stop with "unrecognized arguments" (exit 4): a scheduled job failed on every run after its first.
Installed entry points are loaded before pytest reads the command line again, so this module registers the
suite's plugins there (:data:`PLUGINS`), and then redoes what pytest settled before any of them was loaded:
the rootdir and the configuration file, and, for a run started outside any pytest project (cron from ``/``,
a shell in ``$HOME``), this checkout's ``testpaths`` instead of the working directory.

It serves runs of this checkout and runs from a directory that is no pytest project. In any other run (another
project's configuration, a conftest.py of its own, another checkout of this suite) it registers nothing and
puts nothing on ``sys.path``: the checkout's generic top-level names (``fixtures``, ``remediation``,
``sandbox``) never shadow anyone's, which is also why this is the only module the project installs.
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import pytest

# pytest has no public API to choose the rootdir and configuration file again; these are the functions its own
# Config.parse uses, so a run repaired here gets exactly the setup pytest gives a run written with --opt=PATH.
from _pytest.config.findpaths import determine_setup, locate_config

CHECKOUT = Path(__file__).resolve().parent
PYPROJECT = CHECKOUT / "pyproject.toml"

# The suite's plugins, registered by this entry point or, in runs without the install, by the root conftest.py.
PLUGINS = [
    "fixtures.target",
    "fixtures.api",
    "fixtures.db",
    "fixtures.logs",
    "fixtures.processes",
    "fixtures.system",
    "fixtures.frontend",
    "fixtures.browser",
    "fixtures.automation",
    "fixtures.output",
    "fixtures.service",
    "remediation.contract",
    "remediation.results",
    "remediation.catalog",
    "remediation.rootcause",
    "remediation.applicability",
    "remediation.gate",
    "remediation.notify.alerts",
    "remediation.notify.metrics",
    "remediation.plugin",
]

_SERVED = pytest.StashKey[bool]()


def _ours(inipath: Path | None) -> bool:
    return inipath is not None and inipath.resolve() == PYPROJECT


def _project_of(directory: Path) -> Path | None:
    """The configuration file pytest finds for ``directory`` (None: it is in no pytest project)."""
    return locate_config(directory, [directory])[1]


def _serves(config: pytest.Config) -> bool:
    """A run of this checkout, or from a directory that is no pytest project (and has no conftest.py of its own)."""
    cwd = config.invocation_params.dir
    project = _project_of(cwd)
    return _ours(config.inipath) or _ours(project) or (project is None and not (cwd / "conftest.py").exists())


def pytest_addoption(pluginmanager: pytest.PytestPluginManager) -> None:
    """Register the suite's plugins while this entry point loads, so their options are known from now on."""
    config = pluginmanager.get_plugin("pytestconfig")
    if not _serves(config):
        return
    config.stash[_SERVED] = True
    if str(CHECKOUT) not in sys.path:
        sys.path.insert(0, str(CHECKOUT))
    for name in PLUGINS:
        # A no-op for a plugin already registered (by -p, or by conftest.py in the same run), or blocked by -p no:.
        pluginmanager.import_plugin(name)


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(early_config: pytest.Config, parser: pytest.Parser, args: list[str]) -> None:
    """Choose rootdir and configuration file again, now that no option value is taken for a test path.

    Before the conftest files are loaded: they, ``addopts``, the markers and the timeout all come from that choice.
    """
    config, known = early_config, early_config.known_args_namespace
    if not config.stash.get(_SERVED, False) or known.inifilename or known.rootdir:
        return  # not a run of this suite, or -c / --rootdir chose the setup: it stands
    cwd = config.invocation_params.dir
    # From outside any project with no test path given: this checkout's configuration, and its testpaths, which
    # pytest only applies when started in the rootdir (it would collect the working directory instead).
    outside = not known.file_or_dir and _project_of(cwd) is None
    rootpath, inipath, inicfg, ignored = determine_setup(
        inifile=str(PYPROJECT) if outside else None,
        override_ini=known.override_ini,
        args=known.file_or_dir,
        rootdir_cmd_arg=None,
        invocation_dir=cwd,
    )
    if not outside and (rootpath, inipath) == (config.rootpath, config.inipath):
        return  # pytest chose right: no option value was taken for a path
    # pytest already put the addopts of the file it chose in front of args: take them out before adding ours.
    stale = config.getini("addopts")
    if args[: len(stale)] == stale:
        del args[: len(stale)]
    # What Config.parse set from its first choice, and the ini values read since then.
    config._rootpath, config._inipath, config._inicfg, config._ignored_config_files = rootpath, inipath, inicfg, ignored
    config._inicache.clear()
    parser.extra_info.update(rootdir=str(rootpath), inifile=str(inipath))
    addopts = config.getini("addopts")
    # The -p no:NAME of addopts: pytest acts on -p before it loads plugins; blocking one now unregisters it.
    config.pluginmanager.consider_preparse(addopts, exclude_only=True)
    testpaths = [str(rootpath / path) for path in config.getini("testpaths")] if outside else []
    args[:] = [*addopts, *args, *testpaths]
    # pytest's own pytest_load_initial_conftests, next, finds the initial conftest files from these.
    config.known_args_namespace = parser.parse_known_args(args, namespace=copy.copy(config.option))
    if config.known_args_namespace.confcutdir is None:  # pytest's default: no conftest.py above the rootdir's
        config.known_args_namespace.confcutdir = str(inipath.parent if inipath else rootpath)
