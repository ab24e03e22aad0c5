"""The scheduled jobs of deploy/, installed as deploy/README.md says, give the checks' verdict on every run.

The README's ``install`` lines are run as written into a temporary root (the host's /etc, /run and /var under
it). The command lines are read from deploy/fossawork-health.service and deploy/crontab as systemd and cron read
them, and run as written: only the host's paths are swapped (the checkout for the install directory, the Python
running these tests for the install's venv, the temporary root for the rest), and the account. They run on this
checkout, which is root's, and each job runs twice: the second run finds the JUnit XML and the textfile the first
one wrote, which is when pytest used to take ``--prometheus-textfile PATH`` for a test path and stop with exit 4.

The job runs as the account FossaWork V2 runs as (the unit's User=). The target is a sandbox in the v2 layout,
whose backend runs under an account of its own, as FossaWork V2 is deployed; that account stands for the unit's,
so the jobs read the database, the .env and the backend's processes as they would on a host. The sandbox's Vite
dev server runs as root (Vite writes into the node_modules it shares with the template): no other account can
see its working directory, so that one check fails, on every run, and nothing else does.
"""

from __future__ import annotations

import json
import os
import pwd
import re
import shlex
import subprocess
import sys
from pathlib import Path
from xml.etree import ElementTree

import pytest
from prometheus_client.parser import text_string_to_metric_families

from observe.profile import read_env_file
from sandbox import Sandbox

pytestmark = pytest.mark.usefixtures("entry_point")

ROOT = Path(__file__).resolve().parent.parent
SERVICE = ROOT / "deploy" / "fossawork-health.service"
CRONTAB = ROOT / "deploy" / "crontab"
README = ROOT / "deploy" / "README.md"
# Runs a command as another account, with this interpreter reachable for it (see as_service there).
RUN_AS = ROOT / "sandbox" / "helpers.py"
CHROMIUM = Path("/usr/bin/chromium")
# The environment each scheduler starts a job with: systemd's default PATH, cron's (crontab(5)); both umask 022.
SYSTEMD_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
CRON_PATH = "/usr/bin:/bin"
UMASK = 0o022
UP = "fossawork_health_check_up"
# The one check the account cannot make on the sandbox: its Vite dev server runs as root (see above).
UNSEEN = {"health/test_frontend.py::test_frontend_dev_server_is_running"}


def unit_settings(path: Path) -> list[tuple[str, str]]:
    """(key, value) of every setting of a systemd unit file, in order (systemd.syntax(7))."""
    # A backslash at the end of a line joins the next one, with a space in its place.
    text = re.sub(r"\\\n", " ", path.read_text())
    lines = [line.strip() for line in text.splitlines()]
    return [tuple(line.split("=", 1)) for line in lines if "=" in line and not line.startswith(("#", ";", "["))]


def unit_setting(key: str) -> str:
    """The one value of ``key`` in the unit."""
    (value,) = [value for name, value in unit_settings(SERVICE) if name == key]
    return value


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


def install_steps() -> list[str]:
    """The shell lines of deploy/README.md's "Install on a host", comments dropped."""
    section = README.read_text().split("## Install on a host", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```sh\n(.*?)```", section, re.S)
    return [" ".join(shlex.split(line, comments=True)) for block in blocks for line in block.splitlines()]


class Host:
    """A temporary root for the host's /etc, /run and /var, set up by the README's steps for ``account``."""

    def __init__(self, root: Path, account: pwd.struct_passwd):
        self.root = root
        self.account = account
        self.install_dir = unit_setting("WorkingDirectory")
        self.deployed_account = unit_setting("User")

    def path(self, host_path: str) -> Path:
        return self.root / host_path.lstrip("/")

    def swap(self, text: str) -> str:
        """The host's paths in a command line swapped for this checkout, this Python and the temporary root."""
        text = re.sub(rf"(?:{re.escape(self.install_dir)}/)?\.venv/bin/python\b", sys.executable, text)
        text = text.replace(self.install_dir, str(ROOT))
        return re.sub(r"/(?:etc|run|var)/[\w./-]+", lambda m: str(self.path(m[0])), text)

    def set_up(self) -> None:
        """What the host has (/run/lock, as Debian makes it), then the README's ``install`` lines, as root."""
        self.root.mkdir(mode=0o755)
        lock_dir = self.path("/run/lock")
        lock_dir.mkdir(parents=True)
        lock_dir.chmod(0o1777)
        steps = [step for step in install_steps() if step.startswith("sudo install ")]
        assert steps, f"no `sudo install` line in {README}"
        owner = re.compile(rf"(-[og] ){re.escape(self.deployed_account)}(?= )")
        for step in steps:
            argv = shlex.split(owner.sub(rf"\g<1>{self.account.pw_name}", self.swap(step)))[1:]  # without sudo
            subprocess.run(argv, check=True, capture_output=True, text=True)

    def as_account(self, argv: list[str]) -> list[str]:
        """``argv`` run as the account, which reaches the temporary root through a root-only /tmp/pytest-of-root."""
        ids = [str(self.account.pw_uid), str(self.account.pw_gid)]
        return [sys.executable, str(RUN_AS), "service", *ids, str(self.root), "--", *argv]


@pytest.fixture(scope="module")
def v2_sandbox():
    """A live sandbox in the v2 layout, its backend under its own account; stopped (by pid) after the module."""
    if os.geteuid() != 0:
        pytest.skip("needs root: the jobs run under another account, as a service manager runs them")
    box = Sandbox(layout="v2").start()
    try:
        yield box
    finally:
        box.stop()


@pytest.fixture
def host(v2_sandbox, tmp_path) -> Host:
    """The host after deploy/README.md's steps, for the sandbox backend's account; its env file written as with
    sudoedit (in place: owner and mode stay the README's), naming the sandbox's profile `prod`."""
    backend = v2_sandbox.backend_user
    assert backend["dedicated"], backend
    host = Host(tmp_path / "host", pwd.getpwnam(backend["name"]))
    # What the README's steps stand on: Chromium installed, the checkout root's and closed to the account.
    assert "sudo apt-get install -y chromium" in install_steps() and CHROMIUM.is_file(), "install Debian's chromium"
    for path in (ROOT, ROOT / "reports"):
        mode = path.stat()
        assert mode.st_uid == 0 and not mode.st_mode & 0o022, f"{path} must be root's, as the README installs it"
    host.set_up()
    targets = v2_sandbox.write_targets(host.root / "targets.toml")
    targets.write_text(targets.read_text() + '\n[prod]\nextends = "live"\n')
    profile = v2_sandbox.profile_values()
    secrets = read_env_file(profile["env_file"])
    env = host.path("/etc/fossawork-health/env")
    assert (env.stat().st_uid, env.stat().st_mode & 0o777) == (host.account.pw_uid, 0o600)
    with env.open("w") as handle:
        handle.write(f"FOSSAWORK_TARGET_FILE={targets}\n")
        for name in (profile["password_env"], profile["jwt_secret_env"]):
            handle.write(f"{name}={secrets[name]}\n")
    return host


def service_job(host: Host) -> tuple[list[str], dict[str, str], Path]:
    """ExecStart of the unit as systemd splits it, the environment the unit gives it, and where it starts."""
    settings = unit_settings(SERVICE)
    command = unit_setting("ExecStart")
    # systemd also expands %-specifiers and $VARIABLES, reads C escapes and a leading -@:+! prefix; the unit uses
    # none of them, so its quoting is the shell's, which shlex splits exactly.
    assert not re.search(r"[\\%$]", command) and command.startswith("/"), command
    assert unit_setting("Group") == host.deployed_account
    # What systemd sets for a unit with User=.
    account = host.account
    env = {"PATH": SYSTEMD_PATH, "HOME": account.pw_dir, "USER": account.pw_name, "LOGNAME": account.pw_name}
    for key, value in settings:
        if key == "Environment":
            env.update(assignment.split("=", 1) for assignment in shlex.split(value))
        elif key == "EnvironmentFile":  # read by systemd (root) before it switches to User=
            path = Path(host.swap(value.removeprefix("-")))
            env.update(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
    return shlex.split(host.swap(command)), env, Path(host.swap(unit_setting("WorkingDirectory")))


def cron_job(host: Host) -> tuple[list[str], dict[str, str], Path]:
    """The crontab's job as cron runs it: its SHELL -c the command line, in cron's environment."""
    settings, (command,) = crontab_entries(CRONTAB)
    assert "%" not in command, "cron turns % into a newline"
    shell = settings.get("SHELL", "/bin/sh")
    account = host.account
    env = {"PATH": CRON_PATH, "HOME": account.pw_dir, "LOGNAME": account.pw_name, "SHELL": shell, **settings}
    # cron starts a job in the account's home; the line's own `cd` decides where pytest runs.
    start = Path(account.pw_dir) if Path(account.pw_dir).is_dir() else Path("/")
    return [shell, "-c", host.swap(command)], env, start


def run_job(host: Host, job) -> subprocess.CompletedProcess:
    argv, env, cwd = job(host)
    return subprocess.run(
        host.as_account(argv), cwd=cwd, env=env, umask=UMASK, capture_output=True, text=True, timeout=300
    )


def reported_checks(host: Host) -> tuple[set[str], set[str], set[str]]:
    """The checks a run reported: node ids in the Prometheus textfile, test cases in the JUnit XML, and the
    JUnit XML's failing ones."""
    prom = host.path("/var/lib/node_exporter/textfile_collector/fossawork_health.prom").read_text()
    up = {s.labels["check"] for f in text_string_to_metric_families(prom) for s in f.samples if s.name == UP}
    cases = list(ElementTree.parse(host.path("/var/lib/fossawork-health/junit.xml")).iter("testcase"))
    names = {f"{case.get('classname')}.{case.get('name')}" for case in cases}
    failing = {
        f"{case.get('classname').replace('.', '/')}.py::{case.get('name')}"
        for case in cases
        if case.find("failure") is not None
    }
    return up, names, failing


@pytest.mark.parametrize("job", [service_job, cron_job], ids=["systemd", "cron"])
def test_the_job_gives_the_checks_verdict_on_every_run(host, job):
    reports = host.path("/var/lib/fossawork-health/reports")
    log = host.path("/var/log/fossawork-health/cron.log")  # where the cron job sends its output
    reported, incidents = [], []
    for attempt in (1, 2):
        run = run_job(host, job)
        output = run.stdout + run.stderr + (log.read_text() if log.exists() else "")
        # Exit 1: the one P2 check the account cannot make (UNSEEN) failed; every other passed.
        assert run.returncode == 1, f"run {attempt}: exit {run.returncode}\n{output[-4000:]}"
        up, names, failing = reported_checks(host)
        assert failing == UNSEEN, f"run {attempt}\n{output[-4000:]}"
        reported.append((up, names))
        latest = json.loads((reports / "latest.json").read_text())
        assert [failure["id"] for failure in latest["failures"]] == sorted(UNSEEN)
        incidents.append(latest["run_id"])
    up = reported[0][0]
    assert len(up) > 20 and all(check.startswith("health/") for check in up), up
    # The same checks under the same names: what Prometheus' rules and the waivers match on from run to run.
    assert reported[1] == reported[0]
    # Each run wrote its own incident into the account's report directory.
    assert incidents[0] != incidents[1]
    assert {f"incident-{run_id}.json" for run_id in incidents} <= {p.name for p in reports.iterdir()}


def test_a_report_directory_the_account_does_not_own_is_exit_3_after_the_verdict(host):
    reports = host.path("/var/lib/fossawork-health/reports")
    os.chown(reports, 0, 0)  # a step left out, or a first run by hand as root
    run = run_job(host, service_job)
    output = run.stdout + run.stderr
    assert run.returncode == 3, f"exit {run.returncode}\n{output[-4000:]}"
    line = f"fossawork-health: cannot write reports to {reports} (Permission denied); the checks' verdict above stands"
    assert run.stderr.splitlines()[-1:] == [line], output[-4000:]
    assert "Traceback" not in output and "INTERNALERROR" not in output, output[-4000:]
    # The verdict as on every run: the failure, the incident's summary, pytest's count, the JUnit XML.
    assert re.search(r"^P2 health/test_frontend\.py::test_frontend_dev_server_is_running:$", run.stdout, re.M)
    assert re.search(r"^1 failed, \d+ passed", run.stdout, re.M), run.stdout[-2000:]
    assert reported_checks(host)[2] == UNSEEN
    assert list(reports.iterdir()) == []
