"""Processes of the local servers: start, probe, stop, and the state each keeps under its directory."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from cxr.errors import ConfigError

HOST = "127.0.0.1"
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0

_children: list[subprocess.Popen] = []  # keep Popen objects alive (no ResourceWarning) while we run


@dataclass(frozen=True)
class ServiceStatus:
    name: str
    up: bool
    pid: int | None
    address: str
    detail: str = ""


# -- processes ---------------------------------------------------------------------------

def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def pid_alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie counts as gone)."""
    _reap(pid)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        return state not in ("Z", "X")
    except (OSError, IndexError):
        return True


def _is_ours(pid: int, service_dir: Path) -> bool:
    """The PID still belongs to the server we started (guards against PID reuse)."""
    proc = Path(f"/proc/{pid}")
    if not proc.exists():  # no procfs (macOS): trust the PID file
        return pid_alive(pid)
    marker = str(service_dir.resolve())
    try:
        if marker in (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"):
            return True
        return os.readlink(proc / "cwd").startswith(marker)
    except OSError:
        return False


def terminate(pid: int, timeout: float = STOP_TIMEOUT_S) -> None:
    """SIGTERM ``pid`` (its whole process group when it leads one), SIGKILL after ``timeout`` s."""
    try:
        target_group = os.getpgid(pid) == pid
    except OSError:
        target_group = False
    kill = os.killpg if target_group else os.kill
    with contextlib.suppress(ProcessLookupError):
        kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if pid_alive(pid):
        with contextlib.suppress(ProcessLookupError):
            kill(pid, signal.SIGKILL)
        while pid_alive(pid) and time.monotonic() < deadline + 5:
            time.sleep(0.1)


def port_open(port: int, host: str = HOST, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _log_tail(path: Path, n: int = 5) -> str:
    try:
        lines = [line.strip() for line in path.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return ""
    return " | ".join(lines[-n:])


def _run(argv: list[str], log: Path, what: str) -> None:
    with log.open("ab") as fh:
        res = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=fh, stderr=subprocess.STDOUT, check=False)
    if res.returncode != 0:
        raise ConfigError(f"{what} failed (exit {res.returncode}): {_log_tail(log)}", setting="CXR_DATA_DIR")


# -- one server ----------------------------------------------------------------------------

class Service:
    """A server process with its directory, state file (pid, port) and log."""

    name = ""

    def __init__(self, services_dir: Path, port: int):
        self.dir = (services_dir / self.name).resolve()
        self.port = port
        self.state_file = self.dir / "state.json"
        self.log = self.dir / f"{self.name}.log"

    # subclasses fill these in
    def prepare(self) -> None:
        """One-time initialisation (data directory, keys); must be idempotent."""

    def argv(self) -> list[str]:
        raise NotImplementedError

    def probe(self) -> None:
        """Raise unless the server speaks its protocol (called once its port accepts connections)."""

    def ready(self) -> bool:
        if not port_open(self.port):
            return False
        try:
            self.probe()
            return True
        except Exception:  # noqa: BLE001 - not up yet
            return False

    def bootstrap(self) -> None:
        """Runs after the server answers, on every ``up`` (databases, buckets, users)."""

    def env(self) -> dict[str, str]:
        return {}

    def environ(self) -> dict[str, str] | None:
        """The server process's environment (None: this process's)."""
        return None

    # common machinery
    @property
    def address(self) -> str:
        return f"{HOST}:{self.port}"

    def state(self) -> dict:
        try:
            return json.loads(self.state_file.read_text())
        except (OSError, ValueError):
            return {}

    def running_pid(self) -> int | None:
        pid = self.state().get("pid")
        if isinstance(pid, int) and pid_alive(pid) and _is_ours(pid, self.dir):
            return pid
        return None

    def status(self) -> ServiceStatus:
        st = self.state()
        port = st.get("port", self.port)
        pid = self.running_pid()
        if pid is None:
            return ServiceStatus(self.name, False, None, f"{HOST}:{port}", "not running")
        if not port_open(port):
            return ServiceStatus(self.name, False, pid, f"{HOST}:{port}", f"pid {pid} runs but the port does not answer")
        return ServiceStatus(self.name, True, pid, f"{HOST}:{port}", f"pid {pid}")

    def start(self) -> str:
        """Start the server unless it already runs; wait until it answers; bootstrap it."""
        self.dir.mkdir(parents=True, exist_ok=True)
        pid = self.running_pid()
        if pid is None:
            if port_open(self.port):
                raise ConfigError(f"port {self.port} on {HOST} (for {self.name}) is in use by a program "
                                  f"that `cxr services` did not start; stop it or pick another port",
                                  setting="CXR_SERVICES_PORTS")
            self.prepare()
            with self.log.open("ab") as fh:
                proc = subprocess.Popen(self.argv(), cwd=self.dir, stdin=subprocess.DEVNULL, stdout=fh,
                                        stderr=subprocess.STDOUT, start_new_session=True, env=self.environ())
            _children.append(proc)
            self.state_file.write_text(json.dumps({"pid": proc.pid, "port": self.port}))
            started = "started"
        else:
            proc = None
            started = "already running"
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self.ready():
            if proc is not None and proc.poll() is not None:
                self.state_file.unlink(missing_ok=True)
                raise ConfigError(f"{self.name} exited with code {proc.returncode} on start: {_log_tail(self.log)}"
                                  f" (log: {self.log})", setting="CXR_DATA_DIR")
            if time.monotonic() > deadline:
                self.stop()
                raise ConfigError(f"{self.name} did not answer on {self.address} within {START_TIMEOUT_S:.0f} s "
                                  f"(log: {self.log})", setting="CXR_DATA_DIR")
            time.sleep(0.2)
        try:
            self.bootstrap()
        except ConfigError:
            raise
        except Exception as exc:  # noqa: BLE001 - one line for the person running `up`
            raise ConfigError(f"{self.name} answered but could not be set up: {exc} (log: {self.log})",
                              setting="CXR_DATA_DIR") from None
        return started

    def stop(self) -> bool:
        """Stop the recorded PID (its process group), SIGKILL after a grace period."""
        pid = self.running_pid()
        if pid is None:
            self.state_file.unlink(missing_ok=True)
            return False
        terminate(pid)
        self.state_file.unlink(missing_ok=True)
        return True


def _which(name: str, *extra_dirs: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    for d in extra_dirs:
        if os.access(Path(d) / name, os.X_OK):
            return str(Path(d) / name)
    return None


