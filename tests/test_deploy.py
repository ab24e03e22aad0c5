"""The scheduled jobs of deploy/ give the checks' verdict on every run, not only on the first.

The command lines are read from deploy/fossawork-health.service and deploy/crontab as systemd and cron read
them, and run as written: only the host's paths are swapped for temporary ones (the checkout for the install
directory, the Python running these tests for the install's venv). Each job runs twice against a healthy sandbox:
the second run finds the JUnit XML and the textfile the first one wrote, which is when pytest used to take
``--prometheus-textfile PATH`` for a test path and stop with exit 4.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path, PurePath
from xml.etree import ElementTree

import pytest
from prometheus_client.parser import text_string_to_metric_families

pytestmark = pytest.mark.usefixtures("entry_point")

ROOT = Path(__file__).resolve().parent.parent
SERVICE = ROOT / "deploy" / "fossawork-health.service"
CRONTAB = ROOT / "deploy" / "crontab"
# The environment each scheduler starts a job with: systemd's default PATH, cron's (crontab(5)).
SYSTEMD_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
CRON_PATH = "/usr/bin:/bin"
UP = "fossawork_health_check_up"


def unit_settings(path: Path) -> list[tuple[str, str]]:
    """(key, value) of every setting of a systemd unit file, in order (systemd.syntax(7))."""
    # A backslash at the end of a line joins the next one, with a space in its place.
    text = re.sub(r"\\\n", " ", path.read_text())
    lines = [line.strip() for line in text.splitlines()]
    return [tuple(line.split("=", 1)) for line in lines if "=" in line and not line.startswith(("#", ";", "["))]


def crontab_entries(path: Path) -> tuple[dict[str, str], list[str]]:
    """The environment settings of a crontab and the command of each job (crontab(5))."""
    env, commands = {}, []
    for line in path.read_text().splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        setting = re.fullmatch(r"\s*([A-Za-z_]\w*)\s*=\s*(.*)", line)
        if setting:
            env[setting[1]] = setting[2]
        else:
            commands.append(line.split(None, 5)[5])  # after minute, hour, day of month, month, day of week
    return env, commands


def install_dir() -> str:
    """Where deploy/README.md installs the suite: the unit's working directory."""
    (directory,) = [value for key, value in unit_settings(SERVICE) if key == "WorkingDirectory"]
    return directory


def swap_paths(text: str, tmp_path: Path) -> str:
    """The host's paths in a command line, swapped for this checkout, this Python and files in ``tmp_path``."""
    home = install_dir()
    text = re.sub(rf"(?:{re.escape(home)}/)?\.venv/bin/python\b", sys.executable, text)
    text = text.replace(home, str(ROOT))
    # The lock, the env file, the outputs and the log: the same file name, in tmp_path.
    return re.sub(r"/(?:etc|run|var)/[\w./-]+", lambda m: str(tmp_path / PurePath(m[0]).name), text)


def env_file(tmp_path: Path, sandbox) -> Path:
    """The jobs' /etc/fossawork-health/env: their `prod` profile is the sandbox, their reports stay in tmp_path."""
    targets = sandbox.write_targets(tmp_path / "targets.toml")
    targets.write_text(targets.read_text() + '\n[prod]\nextends = "live"\n')
    path = tmp_path / "env"
    path.write_text(f"FOSSAWORK_TARGET_FILE={targets}\nFOSSAWORK_REPORT_DIR={tmp_path / 'reports'}\n")
    return path


def service_job(tmp_path: Path) -> tuple[list[str], dict[str, str]]:
    """ExecStart of the unit as systemd splits it, and the environment the unit gives it."""
    settings = unit_settings(SERVICE)
    (command,) = [value for key, value in settings if key == "ExecStart"]
    # systemd also expands %-specifiers and $VARIABLES, reads C escapes and a leading -@:+! prefix; the unit uses
    # none of them, so its quoting is the shell's, which shlex splits exactly.
    assert not re.search(r"[\\%$]", command) and command.startswith("/"), command
    env = {"PATH": SYSTEMD_PATH, "HOME": os.environ["HOME"]}
    for key, value in settings:
        if key == "Environment":
            env.update(assignment.split("=", 1) for assignment in shlex.split(value))
        elif key == "EnvironmentFile":  # "-PATH": systemd skips the file when missing; env_file() writes it
            path = Path(swap_paths(value.removeprefix("-"), tmp_path))
            env.update(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
    return shlex.split(swap_paths(command, tmp_path)), env


def cron_job(tmp_path: Path) -> tuple[list[str], dict[str, str]]:
    """The crontab's job as cron runs it: its SHELL -c the command line, in cron's environment."""
    settings, (command,) = crontab_entries(CRONTAB)
    assert "%" not in command, "cron turns % into a newline"
    shell = settings.get("SHELL", "/bin/sh")
    env = {"PATH": CRON_PATH, "HOME": os.environ["HOME"], "SHELL": shell, **settings}
    return [shell, "-c", swap_paths(command, tmp_path)], env


def reported_checks(tmp_path: Path) -> tuple[set[str], set[str]]:
    """The checks a run reported: node ids in the Prometheus textfile, test cases in the JUnit XML."""
    textfile = (tmp_path / "fossawork_health.prom").read_text()
    up = {s.labels["check"] for f in text_string_to_metric_families(textfile) for s in f.samples if s.name == UP}
    cases = {
        f"{case.get('classname')}.{case.get('name')}"
        for case in ElementTree.parse(tmp_path / "junit.xml").iter("testcase")
    }
    return up, cases


@pytest.mark.parametrize("job", [service_job, cron_job], ids=["systemd", "cron"])
def test_the_job_gives_the_checks_verdict_on_every_run(healthy_sandbox, tmp_path, job):
    env_file(tmp_path, healthy_sandbox)
    argv, env = job(tmp_path)
    log = tmp_path / "cron.log"  # where the cron job sends its output
    reported = []
    for attempt in (1, 2):
        # In the install dir (the checkout): the unit's WorkingDirectory, and cron's, the service user's home.
        run = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
        output = run.stdout + run.stderr + (log.read_text() if log.exists() else "")
        assert run.returncode == 0, f"run {attempt} of {argv}: exit {run.returncode}\n{output[-4000:]}"
        # Both outputs are in tmp_path, outside the checkout: the next run finds them there.
        reported.append(reported_checks(tmp_path))
    up = reported[0][0]
    assert len(up) > 20 and all(check.startswith("health/") for check in up), up
    # The same checks under the same names: what Prometheus' rules and the waivers match on from run to run.
    assert reported[1] == reported[0]
