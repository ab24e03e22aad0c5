"""The installed entry point: path options written with a space, runs from any directory, and nothing else touched.

Every run is a real ``python -m pytest`` in a subprocess, with the Python that runs these tests: the entry
point is what that Python's installation provides (./setup.sh), so these tests skip where it is not installed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path
from xml.etree import ElementTree

import pytest

from remediation.contract import marker_lines

pytestmark = pytest.mark.usefixtures("entry_point")

ROOT = Path(__file__).resolve().parent.parent
SETTINGS = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]


def python_elsewhere(code: str) -> str:
    """What ``python -c CODE`` prints when run from /: the checkout is on sys.path only if the install puts it there."""
    return subprocess.run([sys.executable, "-c", code], cwd="/", capture_output=True, text=True, check=True).stdout


def pytest_run(*args: str | Path, cwd: str | Path, reports: Path | None = None) -> subprocess.CompletedProcess:
    """``python -m pytest ARGS`` from ``cwd``; incident reports go to ``reports``, never into the checkout."""
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_ADDOPTS"}  # the outer run's options stay outside
    if reports is not None:
        env["FOSSAWORK_REPORT_DIR"] = str(reports)
    return subprocess.run(
        [sys.executable, "-m", "pytest", *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=240, env=env
    )


def collected(run: subprocess.CompletedProcess) -> list[str]:
    """The node ids a ``--collect-only -q`` run printed."""
    return [line for line in run.stdout.splitlines() if "::" in line]


@pytest.fixture
def elsewhere(tmp_path) -> Path:
    """An empty directory outside the checkout and outside any pytest project."""
    path = tmp_path / "elsewhere"
    path.mkdir()
    return path


@pytest.fixture
def local_targets(tmp_path) -> Path:
    """A targets file outside the checkout whose ``local`` profile is the runbook's defaults."""
    path = tmp_path / "targets.toml"
    path.write_text("[local]\n")
    return path


def test_the_install_adds_no_generic_name_to_the_path():
    # Every module and package at the top of the checkout, but the entry module: none importable from elsewhere.
    names = [
        p.stem
        for p in ROOT.iterdir()
        if p.stem != "pytest_fossawork_health" and (p.suffix == ".py" or (p.is_dir() and any(p.glob("*.py"))))
    ]
    assert {"fixtures", "remediation", "sandbox", "conftest"} <= set(names)
    found = python_elsewhere(f"import importlib.util; print([n for n in {names!r} if importlib.util.find_spec(n)])")
    assert found.strip() == "[]"


def test_the_install_runs_no_code_when_python_starts():
    # site executes the lines of a .pth file that start with "import" at every interpreter start; the install's
    # .pth must only name a directory, and that directory must hold nothing but the entry module.
    code = (
        "import importlib.metadata\n"
        "for f in importlib.metadata.distribution('fossawork-health').files:\n"
        "    if f.suffix == '.pth':\n"
        "        print(f.read_text())\n"
    )
    lines = [line for line in python_elsewhere(code).splitlines() if line.strip()]
    assert lines, "the install has no .pth file"
    assert not [line for line in lines if line.startswith(("import ", "import\t"))], lines
    assert {p.name for line in lines for p in Path(line).iterdir()} == {"pytest_fossawork_health.py"}


def test_a_run_from_outside_any_project_collects_the_checkouts_checks(elsewhere, local_targets):
    outside = pytest_run("--collect-only", "-q", "--target-file", local_targets, cwd=elsewhere)
    inside = pytest_run("--collect-only", "-q", f"--target-file={local_targets}", cwd=ROOT)
    assert outside.returncode == 0, outside.stdout[-2000:] + outside.stderr[-2000:]
    assert collected(outside) == collected(inside)
    assert len(collected(outside)) > 40 and all(node.startswith("health/") for node in collected(outside))


def test_a_run_from_outside_any_project_has_the_checkouts_configuration(elsewhere, local_targets):
    run = pytest_run("--collect-only", "-q", "-v", "--target-file", local_targets, cwd=elsewhere)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    header = run.stdout.split("collected", 1)[0]
    assert f"rootdir: {ROOT}\nconfigfile: pyproject.toml\n" in header
    assert f"\ntimeout: {float(SETTINGS['timeout'])}s\n" in header


def test_a_run_from_outside_any_project_registers_the_checkouts_markers(elsewhere, local_targets):
    run = pytest_run("--markers", "--target-file", local_targets, cwd=elsewhere)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    for marker in marker_lines():
        name, meaning = marker.split(": ", 1)
        assert f"@pytest.mark.{name}: {meaning}" in run.stdout


@pytest.mark.parametrize("inside", [False, True], ids=["outside", "checkout"])
def test_a_run_has_strict_markers(elsewhere, local_targets, inside):
    # The plugin that registers the markers blocked: with the checkout's strict_markers, a marker of a check that
    # nobody registered is a collection error.
    cwd = ROOT if inside else elsewhere
    run = pytest_run("--collect-only", "-q", "--target-file", local_targets, "-p", "no:remediation.contract", cwd=cwd)
    assert run.returncode == pytest.ExitCode.INTERRUPTED, run.stdout[-2000:] + run.stderr[-2000:]
    assert "not found in `markers` configuration option" in run.stdout


def test_a_path_in_another_project_does_not_bring_its_configuration_in(tmp_path):
    # pytest takes PATH of `--target-file PATH` for a test path and reads the pytest.ini above it; its addopts
    # would make the run fail on an option nobody gave.
    other = tmp_path / "other"
    other.mkdir()
    other.joinpath("pytest.ini").write_text("[pytest]\naddopts = --option-of-another-project\n")
    other.joinpath("targets.toml").write_text("[local]\n")
    run = pytest_run("--collect-only", "-q", "--target-file", other / "targets.toml", cwd=ROOT)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    assert len(collected(run)) > 40


@pytest.mark.parametrize("marks_a_project", ["pytest.ini", "conftest.py"])
def test_it_stays_out_of_another_project(tmp_path, marks_a_project):
    tmp_path.joinpath(marks_a_project).write_text("[pytest]\n" if marks_a_project == "pytest.ini" else "")
    tmp_path.joinpath("test_own.py").write_text("def test_own():\n    pass\n")
    own = pytest_run("-q", cwd=tmp_path)
    assert own.returncode == 0 and "1 passed" in own.stdout, own.stdout[-2000:]
    # The suite's plugins are not registered there: their options are unknown.
    ours = pytest_run("-q", "--target-file=targets.toml", cwd=tmp_path)
    assert ours.returncode == pytest.ExitCode.USAGE_ERROR
    assert "unrecognized arguments: --target-file=targets.toml" in ours.stderr


def _report_is_healthy(path: Path) -> bool:
    return json.loads((path / "latest.json").read_text())["severity"] == "healthy"


def _junit_has_the_checks(path: Path) -> bool:
    cases = list(ElementTree.parse(path).getroot().iter("testcase"))
    return bool(cases) and all(case.get("classname").startswith("health.") for case in cases)


def _textfile_has_the_checks(path: Path) -> bool:
    return "fossawork_health_check_up{" in path.read_text()


# The path options besides --target-file: what each writes, and how to tell it holds this run's checks.
PATH_OPTIONS = {
    "--report-dir": ("reports", _report_is_healthy),
    "--junitxml": ("junit.xml", _junit_has_the_checks),
    "--prometheus-textfile": ("fossawork_health.prom", _textfile_has_the_checks),
}


def run_p1_twice(targets: Path, *extra: str | Path, elsewhere: Path, reports: Path) -> None:
    """``pytest --target-file TARGETS --target live -m p1 EXTRA`` from /, twice; both must pass on the checkout."""
    args = ["--target-file", targets, "--target", "live", "-m", "p1"]
    # Without the entry point's takeover, pytest would collect / and run every p1 test of the machine: make sure
    # from an empty directory first that it collects the checkout's checks only.
    guard = pytest_run("--collect-only", "-q", *args, cwd=elsewhere, reports=reports)
    if not collected(guard) or not all(node.startswith("health/") for node in collected(guard)):
        pytest.fail(f"not run from /: elsewhere it collects\n{guard.stdout[-2000:]}{guard.stderr[-2000:]}")
    # The second run finds every PATH existing, which is when pytest took one for a test path.
    for attempt in (1, 2):
        run = pytest_run(*args, *extra, cwd="/", reports=reports)
        assert run.returncode == 0, f"run {attempt}: " + run.stdout[-3000:] + run.stderr[-2000:]
        assert f"rootdir: {ROOT}\n" in run.stdout


def test_target_file_written_with_a_space_works_from_the_root_directory_on_every_run(
    healthy_sandbox, tmp_path, elsewhere
):
    targets = healthy_sandbox.write_targets(tmp_path / "targets.toml")
    run_p1_twice(targets, elsewhere=elsewhere, reports=tmp_path / "default-reports")


@pytest.mark.parametrize("option", PATH_OPTIONS)
def test_path_option_written_with_a_space_works_from_the_root_directory_on_every_run(
    healthy_sandbox, tmp_path, elsewhere, option
):
    name, holds_the_checks = PATH_OPTIONS[option]
    output = tmp_path / name
    targets = healthy_sandbox.write_targets(tmp_path / "targets.toml")
    run_p1_twice(targets, option, output, elsewhere=elsewhere, reports=tmp_path / "default-reports")
    assert holds_the_checks(output)
