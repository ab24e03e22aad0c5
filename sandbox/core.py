"""The Sandbox: a runnable FossaWork V2 stand-in on 127.0.0.1 (stdlib + psutil only at import)."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import pwd
import shlex
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterable
from pathlib import Path

from observe import profile

from . import logfmt, seed
from .faults import FAULTS, SandboxError, remove_tree

PACKAGE_DIR = Path(__file__).resolve().parent
PROJECT_DIR = PACKAGE_DIR.parent
TEMPLATE_DIR = PACKAGE_DIR / "frontend_template"
# Per checkout: `down` without --dir stops the sandboxes this checkout started, never another user's.
REGISTRY = PACKAGE_DIR.parent / ".sandboxes" / "registry.json"
LAYOUTS = ("runbook", "v2")
COMPONENTS = ("backend", "frontend", "workfossa")
START_TIMEOUT = 30.0
SYSTEM_CHROMIUM = "/usr/bin/chromium"
TARGETS_DIR = PROJECT_DIR / ".sandboxes"
SUBDIRS = ("data", "frontend", "run", "faults", "attic", "bin", "workfossa")
# The backend's data (backend folder with the database, logs, backups) shares one filesystem: a tmpfs of this
# size when root can mount one. Room for log_oversized's 101 MiB log, cheap to fill past 90 % (disk_nearly_full).
DATA_FS_BYTES = 128 * 1024 * 1024
# The dedicated system user the v2 backend runs as when the sandbox is started by root (created by `setup`).
SERVICE_USER = "fossawork-sandbox"
# The backend's code, copied into <backend>/app and started from there as the deployment starts it.
APP_MODULES = {"main.py": "app.py", "logfmt.py": "logfmt.py", "seed.py": "seed.py"}


def ensure_service_user() -> bool:
    """Create the sandbox backend's system user when missing (root only); True when it was created."""
    try:
        pwd.getpwnam(SERVICE_USER)
        return False
    except KeyError:
        pass
    if os.geteuid() != 0:
        raise SandboxError(f"the system user {SERVICE_USER!r} is missing and only root can create it")
    useradd = shutil.which("useradd") or "/usr/sbin/useradd"
    proc = subprocess.run(
        [
            useradd,
            "--system",
            "--user-group",
            "--no-create-home",
            "--home-dir",
            "/nonexistent",
            "--shell",
            "/usr/sbin/nologin",
            SERVICE_USER,
        ],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise SandboxError(f"useradd {SERVICE_USER} failed: {(proc.stderr.strip() or 'no output').splitlines()[-1]}")
    return True


def ensure_frontend_deps(timeout: float = 600) -> bool:
    """Install the template's node_modules once with `npm ci`; False when already installed."""
    nm = TEMPLATE_DIR / "node_modules"
    ready = all((nm / p).exists() for p in (".package-lock.json", "vite/bin/vite.js", "typescript/bin/tsc"))
    if not ready:
        npm = shutil.which("npm")
        if not npm:
            raise SandboxError("npm not found on PATH: cannot install the sandbox frontend's node_modules")
        proc = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=TEMPLATE_DIR,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if proc.returncode != 0:
            last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            raise SandboxError(f"npm ci in {TEMPLATE_DIR} failed: {last}")
    # never let a dev server's cache live in the template (sandboxes hard-link its files)
    shutil.rmtree(nm / ".vite", ignore_errors=True)
    return not ready


def free_port() -> int:
    return free_ports(1)[0]


def free_ports(n: int) -> list[int]:
    """``n`` distinct free ports: every socket stays bound until all are chosen, or the kernel may hand the same
    port out twice (the API and the frontend once got one port, and the backend died at start)."""
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(n)]
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]


def _proc_create_time(pid: int) -> float | None:
    import psutil

    try:
        p = psutil.Process(pid)
        if p.status() == psutil.STATUS_ZOMBIE:
            return None
        return p.create_time()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None


def _chown_tree(top: Path, uid: int, gid: int) -> None:
    for parent, dirs, files in os.walk(top):
        os.lchown(parent, uid, gid)
        for name in dirs + files:
            os.lchown(os.path.join(parent, name), uid, gid)


def _alive(rec: dict) -> bool:
    ct = _proc_create_time(rec["pid"])
    return ct is not None and abs(ct - rec["create_time"]) < 0.05


@contextlib.contextmanager
def _registry_lock():
    REGISTRY.parent.mkdir(parents=True, exist_ok=True)
    with open(str(REGISTRY) + ".lock", "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            data = json.loads(REGISTRY.read_text()) if REGISTRY.exists() else []
        except (OSError, ValueError):
            data = []
        box = {"roots": [r for r in data if isinstance(r, str)]}
        yield box
        REGISTRY.write_text(json.dumps(sorted(set(box["roots"]))))


def registry_add(root: Path) -> None:
    with _registry_lock() as box:
        box["roots"].append(str(root))


def registry_remove(root: Path) -> None:
    with _registry_lock() as box:
        box["roots"] = [r for r in box["roots"] if r != str(root)]


def registry_roots() -> list[str]:
    with _registry_lock() as box:
        return list(box["roots"])


class Sandbox:
    """A running FossaWork V2 stand-in: backend, frontend and WorkFossa, all by pid, under one root."""

    def __init__(
        self,
        root: str | Path | None = None,
        layout: str = "runbook",
        faults: Iterable[str] = (),
        frontend: str | Path | None = None,
    ):
        """``frontend``: a Vite + TypeScript source tree to deploy instead of the template (the benchmark's
        real-size one); it runs on the template's node_modules, so it declares the template's dependencies."""
        if layout not in LAYOUTS:
            raise SandboxError(f"unknown layout {layout!r} (known: {', '.join(LAYOUTS)})")
        self.frontend_source = Path(frontend).resolve() if frontend is not None else TEMPLATE_DIR
        if not (self.frontend_source / "package.json").is_file():
            raise SandboxError(f"{self.frontend_source} is no frontend source tree (no package.json)")
        self.layout = layout
        self.initial_faults = list(faults)
        for name in self.initial_faults:
            self._check_fault(name)
        self.owns_root = root is None
        self.root = Path(root).resolve() if root is not None else None
        self.python = sys.executable
        self.state: dict = {}
        self._popens: dict[int, subprocess.Popen] = {}
        self._lock_depth = 0
        self._lock_file = None

    # --- state ---------------------------------------------------------------------------------

    @property
    def state_file(self) -> Path:
        return self.root / "sandbox.json"

    @contextlib.contextmanager
    def _locked(self):
        """Load the state file, yield, save it; reentrant; flock-ed against other processes."""
        if self._lock_depth == 0:
            self._lock_file = open(self.root / "sandbox.lock", "a+")
            fcntl.flock(self._lock_file, fcntl.LOCK_EX)
            if self.state_file.exists():
                self.state = json.loads(self.state_file.read_text())
        self._lock_depth += 1
        try:
            yield self.state
        finally:
            self._lock_depth -= 1
            if self._lock_depth == 0:
                try:
                    if self.root.exists():
                        tmp = self.state_file.with_suffix(".tmp")
                        tmp.write_text(json.dumps(self.state, indent=1))
                        os.replace(tmp, self.state_file)
                finally:
                    self._lock_file.close()
                    self._lock_file = None

    def _reload(self) -> None:
        with self._locked():
            pass

    @classmethod
    def attach(cls, root: str | Path) -> Sandbox:
        root = Path(root).resolve()
        try:
            state = json.loads((root / "sandbox.json").read_text())
        except (OSError, ValueError):
            raise SandboxError(f"no sandbox state file at {root / 'sandbox.json'}") from None
        sb = cls(root=root, layout=state.get("layout", "runbook"))
        sb.owns_root = bool(state.get("owns_root"))
        sb.state = state
        return sb

    @property
    def ports(self) -> dict:
        return self.state.get("ports", {})

    @property
    def paths(self) -> dict[str, Path]:
        r = self.root
        data = r / "data"
        return {
            "root": r,
            # One filesystem for the backend's data (its own tmpfs when root could mount one).
            "data": data,
            "db": data / "backend" / "fossawork_v2.db",
            "backend_dir": data / "backend",
            "env_file": data / "backend" / ".env",
            "credentials_dir": data / "backend" / "data" / "credentials",
            "log_dir": data / "logs",
            "backup_dir": data / "backups",
            "data_attic": data / ".attic",
            "frontend_dir": r / "frontend",
            "run_dir": r / "run",
            # What the service manager stand-in captures of the backend's stdout and stderr: its journal.
            "backend_journal": r / "run" / "backend.out",
            # The service manager's Environment= for the backend (a systemd drop-in), KEY=VALUE lines, if any.
            "backend_environment": r / "run" / "backend.environment",
            "browser": r / "bin" / "chromium",
            "fault_dir": r / "faults",
            "attic": r / "attic",
            "workfossa_dir": r / "workfossa",
            # Inside the checkout, not the temp root: pytest finds its rootdir (and so this project's plugins)
            # from path arguments, so `pytest --target-file <a file under /tmp>` would not load them.
            "targets_file": TARGETS_DIR / f"{r.name}.toml",
        }

    @property
    def backend_user(self) -> dict:
        """Who the backend runs as: name, uid, gid, dedicated (its own system user) and, if not, why not."""
        return self.state.get("backend_user", {})

    def workfossa_logins(self) -> dict:
        """How many logins the WorkFossa stand-in has seen succeed and fail (each failure is one on a real
        account in production)."""
        try:
            return json.loads((self.paths["workfossa_dir"] / "logins.json").read_text())
        except (OSError, ValueError):
            return {"succeeded": 0, "failed": 0}

    @property
    def active_faults(self) -> set[str]:
        return set(self.state.get("faults", {}))

    # --- lifecycle -----------------------------------------------------------------------------

    def start(self) -> Sandbox:
        t0 = time.monotonic()
        ensure_frontend_deps()
        if self.root is None:
            self.root = Path(tempfile.mkdtemp(prefix="fossawork-sandbox-")).resolve()
        else:
            self._prepare_root()
        # Every sandbox is registered, so `python -m sandbox down` also stops one a crashed run left behind.
        registry_add(self.root)
        try:
            self._build()
            with self._locked():
                self._start_component("backend", wait=False)
                self._start_component("frontend", wait=False)
                self._start_component("workfossa", wait=False)
            self._wait_ready(t0 + START_TIMEOUT)
            for name in self.initial_faults:
                self.inject(name)
            self.write_targets(self.paths["targets_file"])
            with self._locked() as st:
                st["start_seconds"] = round(time.monotonic() - t0, 3)
        except BaseException as exc:
            self.stop()
            if isinstance(exc, SandboxError):
                raise
            if isinstance(exc, KeyboardInterrupt):
                raise
            raise SandboxError(f"sandbox failed to start: {type(exc).__name__}: {exc}") from None
        return self

    def _prepare_root(self) -> None:
        root = self.root
        if root.exists() and any(root.iterdir()):
            if not (root / "sandbox.json").exists():
                raise SandboxError(f"{root} is not empty and holds no sandbox; give an empty or new directory")
            old = Sandbox.attach(root)
            if any(_alive(r) for r in old.state.get("procs", {}).values()):
                raise SandboxError(
                    f"a sandbox is already running in {root} (stop it with: python -m sandbox down --dir {root})"
                )
            self._unmount_data()
            for sub in SUBDIRS:
                remove_tree(root / sub)
            remove_tree(root / "sandbox.json")
            remove_tree(self.paths["targets_file"])
        root.mkdir(parents=True, exist_ok=True)

    def _build(self) -> None:
        p = self.paths
        # World-searchable, as /opt is: the backend's own user walks through it to its folder.
        os.chmod(self.root, 0o755)
        for sub in SUBDIRS:
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        data_fs = self._mount_data()
        for key in ("backend_dir", "log_dir", "backup_dir"):
            p[key].mkdir(parents=True, exist_ok=True)
        account = self._backend_account()
        # The automation's browser, as the deployment installs it: a fault can break this one, not the host's.
        p["browser"].symlink_to(SYSTEM_CHROMIUM)
        password = seed.random_secret(24)
        env = seed.new_env(self.layout, password)
        seed.write_env(p["env_file"], env)
        seed.create_db(p["db"], self.layout, env)
        if self.layout == "runbook":
            seed.create_credentials(p["credentials_dir"])
        seed.seed_logs(p["log_dir"], self.layout)
        self._install_app()
        # The WorkFossa account behind the test user: the stand-in checks v2's logins against it.
        accounts = p["workfossa_dir"] / "accounts.json"
        accounts.write_text(json.dumps({seed.TEST_USER: password}))
        os.chmod(accounts, 0o600)
        if account["dedicated"]:
            for key in ("backend_dir", "log_dir"):
                _chown_tree(p[key], account["uid"], account["gid"])
        fe = p["frontend_dir"]
        for item in self.frontend_source.iterdir():
            if item.name in ("node_modules", "dist"):
                continue
            if item.is_dir():
                shutil.copytree(item, fe / item.name)
            else:
                shutil.copy2(item, fe / item.name)
        # "/.": the contents, hard-linked into a folder of the sandbox's own, also when the template's node_modules
        # is a link to another checkout's: a fault moving a package aside, or a tool writing its cache, then acts
        # on this sandbox only, never on the template every other sandbox is made from.
        nm = fe / "node_modules"
        subprocess.run(["cp", "-al", f"{TEMPLATE_DIR / 'node_modules'}/.", str(nm)], check=True)
        shutil.rmtree(nm / ".vite", ignore_errors=True)
        self.state = {
            "root": str(self.root),
            "layout": self.layout,
            "owns_root": self.owns_root,
            "created": time.time(),
            "ports": dict(zip(("api", "frontend", "workfossa"), free_ports(3), strict=True)),
            "backend_user": account,
            "data_fs": data_fs,
            "procs": {},
            "faults": {},
        }
        with self._locked():
            pass

    def _install_app(self) -> None:
        """The backend's code in <backend>/app, started from there as FossaWork V2 is started, so its user needs
        no access to this checkout."""
        target = self.paths["backend_dir"] / "app"
        target.mkdir()
        (target / "__init__.py").write_text('"""FossaWork V2 backend (the sandbox\'s copy)."""\n')
        for name, source in APP_MODULES.items():
            shutil.copy2(PACKAGE_DIR / source, target / name)

    def _backend_account(self) -> dict:
        """Who the backend runs as: in v2, its own system user when root starts the sandbox; else the starter."""
        uid, gid = os.geteuid(), os.getegid()
        try:
            me = pwd.getpwuid(uid).pw_name
        except KeyError:
            me = str(uid)
        starter = {"name": me, "uid": uid, "gid": gid, "dedicated": False}
        if self.layout != "v2":
            return {**starter, "why": "the runbook layout runs the backend as the user who starts the sandbox"}
        if uid != 0:
            return {**starter, "why": f"started by {me} (uid {uid}), who cannot switch users: the backend runs as {me}"}
        ensure_service_user()
        entry = pwd.getpwnam(SERVICE_USER)
        return {"name": SERVICE_USER, "uid": entry.pw_uid, "gid": entry.pw_gid, "dedicated": True, "why": ""}

    def _mount_data(self) -> dict:
        """Mount the data tmpfs when root; {"type": "tmpfs", "bytes": n}, or a plain directory and why."""
        data = self.paths["data"]
        if os.geteuid() != 0:
            return {"type": "directory", "why": f"uid {os.geteuid()} cannot mount a tmpfs"}
        options = f"size={DATA_FS_BYTES},mode=0755"
        proc = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", options, "fossawork-sandbox", str(data)], capture_output=True, text=True
        )
        if proc.returncode != 0:
            last = (proc.stderr.strip() or "no output").splitlines()[-1]
            return {"type": "directory", "why": f"mount -t tmpfs failed: {last}"}
        return {"type": "tmpfs", "bytes": DATA_FS_BYTES}

    def _unmount_data(self) -> None:
        data = self.paths["data"]
        if not os.path.ismount(data):
            return
        # Lazily if something still holds a file there: nothing of this sandbox stays mounted after `down`.
        for argv in (["umount", str(data)], ["umount", "--lazy", str(data)]):
            done = subprocess.run(argv, capture_output=True, text=True)
            if done.returncode == 0:
                return
        raise SandboxError(f"cannot unmount {data}: {done.stderr.strip() or 'no output'}")

    def _wait_ready(self, deadline: float) -> None:
        for comp in COMPONENTS:
            self._wait_component(comp, deadline)

    def _url(self, comp: str) -> str:
        port = self.ports["api" if comp == "backend" else comp]
        path = ("/health" if self.layout == "v2" else "/api/health") if comp == "backend" else "/"
        return f"http://127.0.0.1:{port}{path}"

    def _wait_component(self, comp: str, deadline: float) -> None:
        url = self._url(comp)
        while True:
            rec = self.state["procs"].get(comp)
            if rec is None or not _alive(rec):
                raise SandboxError(f"{comp} exited during start-up: {self._last_output(comp)}")
            try:
                with urllib.request.urlopen(url, timeout=1.0) as r:
                    if r.status < 500:
                        return
            except urllib.error.HTTPError as e:
                if e.code < 500:
                    return
            except (OSError, ValueError):
                pass
            if time.monotonic() > deadline:
                raise SandboxError(f"{comp} did not answer {url} in time: {self._last_output(comp)}")
            time.sleep(0.05)

    def _last_output(self, name: str) -> str:
        out = self.paths["run_dir"] / f"{name}.out"
        try:
            lines = [ln for ln in out.read_text(errors="replace").splitlines() if ln.strip()]
        except OSError:
            lines = []
        return lines[-1].strip()[:300] if lines else "no output"

    def stop(self) -> None:
        if self.root is None or not self.root.exists():
            return
        with self._locked() as st:
            for name in list(st.get("procs", {})):
                self._kill(name)
        for proc in self._popens.values():
            with contextlib.suppress(Exception):
                proc.wait(timeout=0.5)
        self.paths["targets_file"].unlink(missing_ok=True)
        self._unmount_data()
        registry_remove(self.root)
        if self.owns_root:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # --- processes -----------------------------------------------------------------------------

    def spawn(
        self, name: str, argv: list[str], cwd: Path, env: dict | None = None, pidfile: bool = False, service=False
    ) -> int:
        """Start a process detached, its stdout and stderr captured in run/<name>.out (a service manager's
        journal); ``service``: as the backend's user, with the umask that makes the files it creates 0644."""
        run = self.paths["run_dir"]
        if env is None:
            env = dict(os.environ, PYTHONPATH=str(PROJECT_DIR))
        account = self.backend_user if service else {}
        command = argv
        if account.get("dedicated"):
            user = [str(account["uid"]), str(account["gid"]), str(self.root)]
            command = [self.python, str(PACKAGE_DIR / "helpers.py"), "service", *user, "--", *argv]
        with open(run / f"{name}.out", "ab") as out:
            proc = subprocess.Popen(
                command,
                cwd=str(cwd),
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                umask=0o022 if service else -1,
            )
        self._popens[proc.pid] = proc
        ct = None
        for _ in range(100):
            ct = _proc_create_time(proc.pid)
            if ct is not None or proc.poll() is not None:
                break
            time.sleep(0.01)
        with self._locked() as st:
            st["procs"][name] = {"pid": proc.pid, "create_time": ct or 0.0, "argv": argv, "cwd": str(cwd)}
        if pidfile:
            (run / f"{name}.pid").write_text(f"{proc.pid}\n")
        return proc.pid

    def _kill(self, name: str) -> None:
        import psutil

        with self._locked() as st:
            rec = st["procs"].pop(name, None)
            if rec is None:
                return
            pidfile = self.paths["run_dir"] / f"{name}.pid"
            if pidfile.exists() and pidfile.read_text().strip() == str(rec["pid"]):
                pidfile.unlink()
            if not _alive(rec):
                self._reap(rec["pid"])
                return
            pid = rec["pid"]
            try:
                victims = [psutil.Process(pid)] + psutil.Process(pid).children(recursive=True)
            except psutil.NoSuchProcess:
                victims = []
            self._signal(pid, victims, signal.SIGTERM)
            alive = self._wait_gone(pid, victims, 4.0)
            if alive:
                self._signal(pid, alive, signal.SIGKILL)
                self._wait_gone(pid, alive, 4.0)
            self._reap(pid)

    def _wait_gone(self, leader: int, procs, timeout: float) -> list:
        """Wait until every process has exited (a zombie counts as gone); return those still running."""
        import psutil

        deadline = time.monotonic() + timeout
        while True:
            popen = self._popens.get(leader)
            if popen is not None:
                popen.poll()
            alive = []
            for p in procs:
                try:
                    if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                        alive.append(p)
                except psutil.NoSuchProcess:
                    pass
            if not alive or time.monotonic() > deadline:
                return alive
            time.sleep(0.03)

    @staticmethod
    def _signal(leader: int, procs, sig) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if os.getpgid(leader) == leader:
                os.killpg(leader, sig)
        for p in procs:
            with contextlib.suppress(Exception):
                p.send_signal(sig)

    def _reap(self, pid: int) -> None:
        proc = self._popens.pop(pid, None)
        if proc is not None:
            with contextlib.suppress(Exception):
                proc.wait(timeout=2)

    def _proc_alive(self, name: str) -> bool:
        rec = self.state.get("procs", {}).get(name)
        return rec is not None and _alive(rec)

    def _backend_env(self) -> dict:
        p = self.paths
        env = dict(os.environ)
        env.pop("SECRET_KEY", None)
        # The backend imports its own copy (<backend>/app), never this checkout.
        env.pop("PYTHONPATH", None)
        env.update(
            FOSSA_SANDBOX_ROOT=str(self.root),
            FOSSA_SANDBOX_LAYOUT=self.layout,
            FOSSA_SANDBOX_DB=str(p["db"]),
            FOSSA_SANDBOX_LOG_DIR=str(p["log_dir"]),
            FOSSA_SANDBOX_FAULT_DIR=str(p["fault_dir"]),
            FOSSA_SANDBOX_ENV_FILE=str(p["env_file"]),
            FOSSA_SANDBOX_ORIGINS=f"http://127.0.0.1:{self.ports['frontend']}",
            FOSSA_SANDBOX_WORKFOSSA_URL=f"http://127.0.0.1:{self.ports['workfossa']}",
            PYTHONDONTWRITEBYTECODE="1",
        )
        if self.backend_user.get("dedicated"):
            env.update(HOME=str(p["backend_dir"]), USER=SERVICE_USER, LOGNAME=SERVICE_USER)
        env.update(seed.read_env(p["backend_environment"]))
        return env

    def spawn_backend(self, name: str, port: int) -> int:
        argv = [
            self.python,
            "-m",
            "uvicorn",
            "app.main:app",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--no-access-log",
            "--timeout-graceful-shutdown",
            "1",
        ]
        pid = self.spawn(
            name, argv, self.paths["backend_dir"], self._backend_env(), pidfile=name == "backend", service=True
        )
        if name != "backend":
            self.wait_tcp(port, name)
        return pid

    def spawn_frontend(self, name: str, port: int) -> int:
        node = shutil.which("node") or "node"
        argv = [node, "node_modules/vite/bin/vite.js", "--host", "127.0.0.1", "--port", str(port), "--strictPort"]
        env = dict(os.environ, BROWSER="none", NO_COLOR="1")
        pid = self.spawn(name, argv, self.paths["frontend_dir"], env, pidfile=name == "frontend")
        if name != "frontend":
            self.wait_tcp(port, name)
        return pid

    def _start_component(self, comp: str, wait: bool = True) -> None:
        with self._locked():
            if self._proc_alive(comp):
                self._kill(comp)
            if comp == "backend":
                self.spawn_backend("backend", self.ports["api"])
            elif comp == "frontend":
                self.spawn_frontend("frontend", self.ports["frontend"])
            elif comp == "workfossa":
                self.spawn(
                    "workfossa",
                    [
                        self.python,
                        "-m",
                        "sandbox.helpers",
                        "workfossa",
                        str(self.ports["workfossa"]),
                        str(self.paths["workfossa_dir"]),
                    ],
                    self.root,
                    dict(os.environ, PYTHONPATH=str(PROJECT_DIR)),
                    pidfile=True,
                )
            else:
                raise SandboxError(f"unknown component {comp!r} (known: {', '.join(COMPONENTS)})")
            if wait:
                self._wait_component(comp, time.monotonic() + START_TIMEOUT)

    def restart_component(self, comp: str, wait: bool = True) -> None:
        """(Re)start one component; ``wait``: until it answers (a start expected to fail does not wait)."""
        self._start_component(comp, wait=wait)

    def wait_exit(self, name: str, timeout: float = 15.0) -> None:
        """Wait until a process of this sandbox has exited, and reap it (a zombie would still count as running)."""
        deadline = time.monotonic() + timeout
        while self._proc_alive(name):
            if time.monotonic() > deadline:
                raise SandboxError(f"{name} still running after {timeout:g} s")
            time.sleep(0.05)
        self._reap(self.state["procs"][name]["pid"])

    def stop_component(self, comp: str) -> None:
        self._kill(comp)

    def wait_tcp(self, port: int, name: str, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
            if not self._proc_alive(name):
                raise SandboxError(f"{name} exited before listening on port {port}: {self._last_output(name)}")
            if time.monotonic() > deadline:
                raise SandboxError(f"{name} did not listen on port {port} in time")
            time.sleep(0.05)

    def wait_output(self, name: str, text: str, timeout: float = 15.0) -> None:
        out = self.paths["run_dir"] / f"{name}.out"
        deadline = time.monotonic() + timeout
        while text not in (out.read_text(errors="replace") if out.exists() else ""):
            if not self._proc_alive(name):
                raise SandboxError(f"{name} exited: {self._last_output(name)}")
            if time.monotonic() > deadline:
                raise SandboxError(f"{name} did not report {text!r} in time")
            time.sleep(0.05)

    def free_port(self) -> int:
        return free_port()

    def spawn_zombies(self, n: int, base: Path, rec: dict) -> None:
        import psutil

        out = self.paths["run_dir"] / "zombies.spawner.out"
        with open(out, "wb") as f:
            subprocess.run(
                [self.python, "-m", "sandbox.helpers", "zombies", str(n), str(base)],
                cwd=self.root,
                env=dict(os.environ, PYTHONPATH=str(PROJECT_DIR)),
                stdin=subprocess.DEVNULL,
                stdout=f,
                stderr=subprocess.DEVNULL,
                timeout=30,
                check=True,
            )
        pids = [int(x) for x in out.read_text().split()]
        (self.paths["run_dir"] / "zombies.pids").write_text("".join(f"{p}\n" for p in pids))
        with self._locked() as st:
            for i, pid in enumerate(pids):
                ct = _proc_create_time(pid) or 0.0
                name = f"browser_zombie_{i}"
                st["procs"][name] = {
                    "pid": pid,
                    "create_time": ct,
                    "argv": ["/usr/bin/chromium"],
                    "cwd": str(self.root),
                }
                rec["procs"].append(name)
        rec["created"].append(str(self.paths["run_dir"] / "zombies.pids"))
        # let them come up (a browser that dies at once would not be a zombie)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            n_up = sum(
                1
                for p in psutil.process_iter(["cmdline"])
                if "chromium" in " ".join(p.info["cmdline"] or []) and str(base) in " ".join(p.info["cmdline"] or [])
            )
            if n_up >= n:
                break
            time.sleep(0.1)

    # --- fault primitives (used by faults.py) ------------------------------------------------

    def attic_dir(self, fault: str) -> Path:
        d = self.paths["attic"] / fault
        d.mkdir(parents=True, exist_ok=True)
        return d

    def flag(self, name: str, rec: dict) -> None:
        f = self.paths["fault_dir"] / name
        f.write_text("on\n")
        rec["created"].append(str(f))

    def move_aside(self, path: Path, rec: dict) -> None:
        # Into an attic on the path's own filesystem: a rename, which keeps the owner and copies nothing.
        attic = self.paths["data_attic"] if path.is_relative_to(self.paths["data"]) else self.paths["attic"]
        dest = attic / rec["name"] / path.relative_to(self.root)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(path), str(dest))
        rec["moved"].append([str(path), str(dest)])

    def backup_file(self, path: Path, rec: dict) -> None:
        dest = self.paths["attic"] / rec["name"] / "backup" / path.relative_to(self.root)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, dest)
        st = path.stat()
        rec["backups"].append([str(path), str(dest), st.st_uid, st.st_gid])

    def backup_database(self, rec: dict) -> None:
        """Back up the database for an exact clear, its WAL checkpointed into the file first; the WAL and
        shared-memory files the fault's lifetime leaves beside it are removed before the file is restored."""
        db = self.paths["db"]
        conn = sqlite3.connect(db, timeout=10)
        try:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            conn.close()
        self.backup_file(db, rec)
        rec["created"] += [f"{db}-wal", f"{db}-shm"]

    def move_database_aside(self, rec: dict) -> None:
        """Move the database aside with its WAL and shared-memory files (three files, one database); whatever
        appears in their place meanwhile is removed on clear."""
        db = self.paths["db"]
        for path in (db, Path(f"{db}-wal"), Path(f"{db}-shm")):
            if path.exists():
                self.move_aside(path, rec)
        rec["created"] += [f"{db}-wal", f"{db}-shm"]

    def give_to_backend(self, path: Path) -> None:
        """Make a file the fault created the backend user's, as if the deployment had written it."""
        account = self.backend_user
        if account.get("dedicated"):
            os.lchown(path, account["uid"], account["gid"])

    def chmod(self, path: Path, mode: int, rec: dict) -> None:
        rec["modes"].append([str(path), os.stat(path).st_mode & 0o7777])
        os.chmod(path, mode)

    def chown(self, path: Path, uid: int, gid: int, rec: dict) -> None:
        st = os.lstat(path)
        rec["owners"].append([str(path), st.st_uid, st.st_gid])
        os.lchown(path, uid, gid)

    def append_lines(self, path: Path, lines: list[str], rec: dict) -> None:
        logfmt.append(path, lines)
        rec["appended"].append([str(path), lines])

    # --- faults --------------------------------------------------------------------------------

    def _check_fault(self, name: str):
        f = FAULTS.get(name)
        if f is None:
            raise SandboxError(f"unknown fault {name!r} (see: python -m sandbox fault list)")
        if self.layout not in f.layouts:
            raise SandboxError(f"fault {name!r} does not apply to layout {self.layout!r} (only {', '.join(f.layouts)})")
        return f

    def inject(self, fault: str) -> None:
        f = self._check_fault(fault)
        if self.root is None or not self.state_file.exists():
            raise SandboxError("the sandbox is not running (start() it first)")
        with self._locked() as st:
            if fault in st["faults"]:
                return
            rec = {
                "name": fault,
                "t0": time.time(),
                "created": [],
                "moved": [],
                "backups": [],
                "modes": [],
                "owners": [],
                "appended": [],
                "procs": [],
                "restart": [],
            }
            st["faults"][fault] = rec
            try:
                if f.inject is not None:
                    f.inject(self, rec)
            except Exception as exc:
                self._undo(rec)
                st["faults"].pop(fault, None)
                if isinstance(exc, SandboxError):
                    raise
                raise SandboxError(f"injecting {fault} failed: {type(exc).__name__}: {exc}") from None
        self._refresh_targets()

    def clear(self, fault: str) -> None:
        self._check_fault(fault)
        with self._locked() as st:
            rec = st["faults"].get(fault)
            if rec is None:
                return
            self._undo(rec)
            st["faults"].pop(fault, None)
        self._refresh_targets()

    def clear_all(self) -> None:
        with self._locked() as st:
            for name in reversed(list(st.get("faults", {}))):
                self.clear(name)

    def _undo(self, rec: dict) -> None:
        for name in rec["procs"]:
            self._kill(name)
        for path in reversed(rec["created"]):
            remove_tree(Path(path))
        for orig, aside in reversed(rec["moved"]):
            orig, aside = Path(orig), Path(aside)
            if not aside.exists():
                continue
            if orig.exists():
                if orig.is_file() and aside.is_file() and orig.is_relative_to(self.paths["log_dir"]):
                    # the app re-created the log meanwhile: keep what it wrote after the original lines
                    with open(aside, "ab") as dst, open(orig, "rb") as src:
                        shutil.copyfileobj(src, dst)
                remove_tree(orig)
            orig.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(aside), str(orig))
        for orig, copy, uid, gid in reversed(rec["backups"]):
            if Path(copy).exists():
                remove_tree(Path(orig))
                shutil.copy2(copy, orig)
                if os.geteuid() == 0:  # the copy is root's: give it back to the file's owner (the backend's user)
                    os.chown(orig, uid, gid)
        for path, mode in reversed(rec["modes"]):
            with contextlib.suppress(OSError):
                os.chmod(path, mode)
        for path, uid, gid in reversed(rec.get("owners", [])):
            with contextlib.suppress(OSError):
                os.lchown(path, uid, gid)
        for path, lines in rec["appended"]:
            self._remove_lines(Path(path), lines)
        for attic in (self.paths["attic"], self.paths["data_attic"]):
            shutil.rmtree(attic / rec["name"], ignore_errors=True)
        self._strip_app_errors(rec.get("t0", time.time()))
        for comp in dict.fromkeys(rec["restart"]):
            self.restart_component(comp)

    def _strip_app_errors(self, since: float) -> None:
        """Remove the error lines the app itself wrote while the fault was active (clear is exact)."""
        log_dir = self.paths["log_dir"]
        kinds = logfmt.ERROR_KINDS[self.layout]
        files = {f for kind in kinds for g in logfmt.GLOBS[self.layout][kind] for f in log_dir.glob(g)}
        limit = since - 1.0
        for f in files:
            try:
                if f.stat().st_mtime < limit:
                    continue
                lines = f.read_text(encoding="utf-8").splitlines()
            except OSError:
                continue
            kept = []
            for line in lines:
                when, logger = logfmt.parse(line)
                if logger == logfmt.APP_ERROR_LOGGER and when is not None and when.timestamp() >= limit:
                    continue
                kept.append(line)
            if len(kept) != len(lines):
                f.write_text("".join(ln + "\n" for ln in kept), encoding="utf-8")

    @staticmethod
    def _remove_lines(path: Path, lines: list[str]) -> None:
        if not path.exists():
            return
        todo = list(lines)
        kept = []
        for line in path.read_text(encoding="utf-8").splitlines():
            if line in todo:
                todo.remove(line)
            else:
                kept.append(line)
        path.write_text("".join(ln + "\n" for ln in kept), encoding="utf-8")

    # --- profile -------------------------------------------------------------------------------

    def _cli(self, *args: str) -> str:
        return " ".join(
            [
                "env",
                shlex.quote(f"PYTHONPATH={PROJECT_DIR}"),
                shlex.quote(self.python),
                "-m",
                "sandbox",
                *args,
                "--dir",
                shlex.quote(str(self.root)),
            ]
        )

    def profile_values(self) -> dict:
        p = self.paths
        ports = self.ports
        v2 = self.layout == "v2"
        values = {
            "description": f"FossaWork V2 sandbox ({self.layout} layout) at {self.root}",
            "host": "local",
            "api_url": f"http://127.0.0.1:{ports['api']}",
            "frontend_url": f"http://127.0.0.1:{ports['frontend']}",
            "workfossa_url": f"http://127.0.0.1:{ports['workfossa']}",
            "db_path": str(p["db"]),
            "backup_dir": str(p["backup_dir"]),
            "log_dir": str(p["log_dir"]),
            "log_timezone": "local" if v2 else "UTC",
            "credentials_dir": "" if v2 else str(p["credentials_dir"]),
            "credentials_table": "user_credentials" if v2 else "",
            "frontend_dir": str(p["frontend_dir"]),
            "env_file": str(p["env_file"]),
            "password_env": "FOSSAWORK_TEST_PASSWORD",
            "jwt_secret_env": "SECRET_KEY",
            "test_user": seed.TEST_USER,
            "backend_unit": "",
            "frontend_unit": "",
            "pid_dir": str(p["run_dir"]),
            "backend_start": self._cli("start", "backend"),
            "frontend_start": self._cli("start", "frontend"),
            "backend_process": "uvicorn",
            "backend_cwd": str(p["backend_dir"]),
            "backend_output": str(p["backend_journal"]),
            "backend_workers": 1,
            "frontend_process": "vite",
            "frontend_cwd": str(p["frontend_dir"]),
            "disk_path": str(self.root),
            "browser_executable": str(p["browser"]),
            "db_tables": ["users", "work_orders", "dispensers"]
            + (["user_credentials", "automation_jobs"] if v2 else []),
            "endpoints": {
                "health": "/health" if v2 else "/api/health",
                "login": "/api/auth/login",
                "validate": "/api/auth/me" if v2 else "/api/auth/validate",
                "logout": "/api/auth/logout",
                "work_orders": "/api/v1/work-orders/?user_id={user_id}" if v2 else "/api/work-orders",
                # v2 has no dispensers route: they come inside the work-order list.
                "dispensers": "/api/v1/work-orders/?user_id={user_id}" if v2 else "/api/dispensers",
            },
            "logs": {k: list(v) for k, v in logfmt.GLOBS[self.layout].items()}
            | {"active": list(logfmt.ACTIVE[self.layout])},
            # FossaWork V2 records automation outcomes as rows, not log lines.
            **({"automation": {"table": "automation_jobs"}} if v2 else {}),
            # The sandbox answers on loopback in milliseconds (1.5 s under its api_slow fault), so waiting the
            # runbook's 5 s for a production API over a network would only delay the verdict on a hung one.
            # v2's login waits on WorkFossa (2 s here, 10-30 s deployed): it keeps the runbook's 5 s.
            "timeouts": {"read": 5.0 if v2 else 3.0},
        }
        thresholds = {}
        for name in self.state.get("faults", {}):
            f = FAULTS.get(name)
            if f is not None and f.thresholds:
                thresholds.update(f.thresholds)
        if thresholds:
            values["thresholds"] = thresholds
        return values

    def write_targets(self, path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        header = (
            "# Written by the FossaWork sandbox (python -m sandbox). No secrets here: the profile names the\n"
            "# environment variables; their values are in env_file.\n"
        )
        path.write_text(header + profile.dump("live", self.profile_values()), encoding="utf-8")
        return path

    def _refresh_targets(self) -> None:
        if self.paths["targets_file"].exists() or self.state.get("procs"):
            self.write_targets(self.paths["targets_file"])

    def info(self) -> dict:
        return {
            "targets_file": str(self.paths["targets_file"]),
            "profile": "live",
            "root": str(self.root),
            "layout": self.layout,
            "pids": {k: v["pid"] for k, v in self.state.get("procs", {}).items()},
            "ports": dict(self.ports),
            "paths": {k: str(v) for k, v in self.paths.items()},
            "faults": sorted(self.active_faults),
            "backend_user": self.backend_user,
            "data_fs": self.state.get("data_fs"),
            "workfossa_logins": self.workfossa_logins(),
            "start_seconds": self.state.get("start_seconds"),
        }
