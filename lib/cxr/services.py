"""Real local servers for development and tests: ``cxr services up|down|status``.

Four servers stand in for the AWS parts of the design, each on loopback with its data under
``<data_dir>/services/<name>/``:

========== ============================ ======= ===============================================
name       what                         port    stands in for
========== ============================ ======= ===============================================
mariadb    MariaDB (Debian package)     3307    RDS MySQL: database ``cxr``, app user ``cxr``
s3         moto's HTTP S3 server        5055    S3: bucket ``cxr-test-lake`` (state in memory)
warehouse  SecantusDB (MongoDB wire)    27018   DocumentDB
sshd       OpenSSH daemon               2222    the EC2 bastion; generated host + client keys
========== ============================ ======= ===============================================

``up`` is idempotent: a server already running (its recorded PID is alive, is ours and its
port answers) is left alone; a port held by some other program is reported as a
:class:`~cxr.errors.ConfigError`. ``down`` stops exactly the PIDs ``up`` recorded. ``up``
writes ``<data_dir>/services/services.env`` (``CXR_*`` settings plus test AWS credentials;
mode 0600, the generated MariaDB password is in it) that both pydantic-settings
(``CXR_ENV_FILE=...``) and a shell (``set -a; . var/services/services.env``) can read.

The MariaDB app user may also create and drop databases named ``cxr_*`` (one per test).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from cxr.errors import ConfigError

HOST = "127.0.0.1"
PORTS = {"mariadb": 3307, "s3": 5055, "warehouse": 27018, "sshd": 2222}
NAMES = tuple(PORTS)
BUCKET = "cxr-test-lake"
DB_NAME = "cxr"
DB_USER = "cxr"
#: Credentials moto accepts; never real ones.
TEST_AWS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
ENV_FILE = "services.env"
AUTOSTART_MARKER = "autostarted"  # present while the stack was started on demand by a test session
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
                                        stderr=subprocess.STDOUT, start_new_session=True)
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


class MariaDB(Service):
    name = "mariadb"

    @property
    def data(self) -> Path:
        return self.dir / "data"

    @property
    def socket_path(self) -> Path:
        path = self.dir / "run" / "mysqld.sock"
        if len(str(path)) > 100:  # a Unix socket path is limited to ~107 bytes
            import hashlib
            import tempfile

            digest = hashlib.sha256(str(path).encode()).hexdigest()[:12]
            path = Path(tempfile.gettempdir()) / f"cxr-mysqld-{digest}.sock"
        return path

    @property
    def password(self) -> str:
        path = self.dir / "password"
        if not path.exists():
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(secrets.token_hex(16))
        return path.read_text().strip()

    def prepare(self) -> None:
        (self.dir / "run").mkdir(parents=True, exist_ok=True)
        if (self.dir / ".installed").exists():
            return
        shutil.rmtree(self.data, ignore_errors=True)
        argv = [_which("mariadb-install-db", "/usr/bin") or "mariadb-install-db", "--no-defaults",
                f"--datadir={self.data}", "--auth-root-authentication-method=normal", "--skip-test-db"]
        if os.geteuid() == 0:
            argv.append("--user=root")
        _run(argv, self.log, "mariadb-install-db")
        (self.dir / ".installed").touch()

    def argv(self) -> list[str]:
        argv = [_which("mariadbd", "/usr/sbin") or "mariadbd", "--no-defaults", f"--datadir={self.data}",
                f"--bind-address={HOST}", f"--port={self.port}", f"--socket={self.socket_path}",
                f"--pid-file={self.dir / 'run' / 'mysqld.pid'}", f"--log-error={self.dir / 'mariadb-error.log'}",
                "--skip-name-resolve", "--innodb-buffer-pool-size=128M", "--innodb-log-file-size=16M",
                "--character-set-server=utf8mb4", "--collation-server=utf8mb4_unicode_ci",
                "--max-connections=300"]
        if os.geteuid() == 0:
            argv.append("--user=root")
        return argv

    def _root(self):  # noqa: ANN202
        import pymysql

        return pymysql.connect(unix_socket=str(self.socket_path), user="root", connect_timeout=2, autocommit=True)

    def probe(self) -> None:
        self._root().close()

    def bootstrap(self) -> None:
        pw = self.password
        conn = self._root()
        try:
            with conn.cursor() as cur:
                cur.execute(f"CREATE DATABASE IF NOT EXISTS `{DB_NAME}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
                for host in (HOST, "localhost"):
                    cur.execute("CREATE USER IF NOT EXISTS %s@%s IDENTIFIED BY %s", (DB_USER, host, pw))
                    cur.execute("ALTER USER %s@%s IDENTIFIED BY %s", (DB_USER, host, pw))
                    cur.execute(f"GRANT ALL PRIVILEGES ON `{DB_NAME}`.* TO %s@%s", (DB_USER, host))
                    # one database per test: cxr_<anything>
                    cur.execute(f"GRANT ALL PRIVILEGES ON `{DB_NAME}\\_%%`.* TO %s@%s", (DB_USER, host))
                cur.execute("FLUSH PRIVILEGES")
        finally:
            conn.close()

    def env(self) -> dict[str, str]:
        return {"CXR_DB_URL": f"mysql+pymysql://{DB_USER}:{self.password}@{HOST}:{self.port}/{DB_NAME}?charset=utf8mb4"}


class S3(Service):
    name = "s3"

    def argv(self) -> list[str]:
        return [sys.executable, "-m", "moto.server", "-H", HOST, "-p", str(self.port)]

    @property
    def endpoint(self) -> str:
        return f"http://{HOST}:{self.port}"

    def client(self):  # noqa: ANN201
        return s3_client(self.endpoint)

    def probe(self) -> None:
        self.client().list_buckets()

    def bootstrap(self) -> None:
        client = self.client()
        names = {b["Name"] for b in client.list_buckets().get("Buckets", [])}
        if BUCKET not in names:
            client.create_bucket(Bucket=BUCKET)

    def env(self) -> dict[str, str]:
        return {"CXR_LAKE_URL": f"s3://{BUCKET}", "CXR_S3_ENDPOINT_URL": self.endpoint,
                "CXR_S3_REGION": TEST_AWS["AWS_DEFAULT_REGION"], **TEST_AWS}


def s3_client(endpoint: str):  # noqa: ANN201
    """A boto3 S3 client for a local test endpoint with the test credentials."""
    import boto3

    return boto3.session.Session(aws_access_key_id=TEST_AWS["AWS_ACCESS_KEY_ID"],
                                 aws_secret_access_key=TEST_AWS["AWS_SECRET_ACCESS_KEY"],
                                 region_name=TEST_AWS["AWS_DEFAULT_REGION"]).client("s3", endpoint_url=endpoint)


class Warehouse(Service):
    name = "warehouse"

    def argv(self) -> list[str]:
        return [sys.executable, "-m", "secantus", "--host", HOST, "--port", str(self.port),
                "--storage-path", str(self.dir / "data"), "--cache-size", "256M", "--log-level", "WARNING"]

    @property
    def uri(self) -> str:
        return f"mongodb://{HOST}:{self.port}/?directConnection=true"

    def probe(self) -> None:
        from pymongo import MongoClient

        with MongoClient(self.uri, serverSelectionTimeoutMS=1000, connectTimeoutMS=1000) as client:
            client.admin.command("ping")

    def env(self) -> dict[str, str]:
        return {"CXR_WAREHOUSE_URL": self.uri}


class SSHD(Service):
    name = "sshd"

    @property
    def host_key(self) -> Path:
        return self.dir / "ssh_host_ed25519_key"

    @property
    def client_key(self) -> Path:
        return self.dir / "id_ed25519"

    @property
    def known_hosts(self) -> Path:
        return self.dir / "known_hosts"

    @property
    def user(self) -> str:
        import getpass

        return getpass.getuser()

    def _keygen(self, path: Path, comment: str) -> None:
        if path.exists() and path.with_suffix(".pub").exists():
            return
        path.unlink(missing_ok=True)
        _run([_which("ssh-keygen", "/usr/bin") or "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment,
              "-f", str(path)], self.log, "ssh-keygen")

    def prepare(self) -> None:
        self._keygen(self.host_key, "cxr-services-host")
        self._keygen(self.client_key, "cxr-services-client")
        shutil.copyfile(self.client_key.with_suffix(".pub"), self.dir / "authorized_keys")
        host_pub = self.host_key.with_suffix(".pub").read_text().split()
        self.known_hosts.write_text(f"[{HOST}]:{self.port} {host_pub[0]} {host_pub[1]}\n")
        if os.geteuid() == 0:
            Path("/run/sshd").mkdir(mode=0o755, parents=True, exist_ok=True)
        (self.dir / "sshd_config").write_text(
            "\n".join([
                f"Port {self.port}",
                f"ListenAddress {HOST}",
                f"HostKey {self.host_key}",
                f"PidFile {self.dir / 'sshd.pid'}",
                f"AuthorizedKeysFile {self.dir / 'authorized_keys'}",
                "PubkeyAuthentication yes",
                "PasswordAuthentication no",
                "KbdInteractiveAuthentication no",
                "UsePAM no",
                "PermitRootLogin prohibit-password",
                f"AllowUsers {self.user}",
                "AllowTcpForwarding yes",
                "Subsystem sftp internal-sftp",
                "StrictModes no",
                "PrintMotd no",
                "LogLevel INFO",
                "",
            ])
        )

    def argv(self) -> list[str]:
        return [_which("sshd", "/usr/sbin") or "/usr/sbin/sshd", "-f", str(self.dir / "sshd_config"), "-D", "-e"]

    def probe(self) -> None:
        with socket.create_connection((HOST, self.port), timeout=1) as conn:
            if not conn.recv(64).startswith(b"SSH-"):
                raise OSError("no SSH banner")

    def env(self) -> dict[str, str]:
        return {"CXR_SSH_HOST": HOST, "CXR_SSH_PORT": str(self.port), "CXR_SSH_USER": self.user,
                "CXR_SSH_KEY_FILE": str(self.client_key), "CXR_SSH_KNOWN_HOSTS": str(self.known_hosts)}


_CLASSES: dict[str, type[Service]] = {"mariadb": MariaDB, "s3": S3, "warehouse": Warehouse, "sshd": SSHD}


# -- the stack -----------------------------------------------------------------------------

def _data_dir(data_dir: Path | None) -> Path:
    if data_dir is not None:
        return Path(data_dir)
    from cxr.config import get_settings

    return get_settings().data_dir


def services_dir(data_dir: Path | None = None) -> Path:
    return (_data_dir(data_dir) / "services").resolve()


def parse_ports(spec: str | None) -> dict[str, int]:
    """``"mariadb=3307,s3=5055"`` -> ports, over :data:`PORTS`."""
    ports = dict(PORTS)
    for item in filter(None, (p.strip() for p in (spec or "").split(","))):
        name, _, value = item.partition("=")
        if name.strip() not in ports or not value.strip().isdigit():
            raise ConfigError(f"bad entry {item!r}; use name=port with names {', '.join(NAMES)}",
                              setting="CXR_SERVICES_PORTS")
        ports[name.strip()] = int(value)
    return ports


def _settings_ports() -> dict[str, int]:
    from cxr.config import get_settings

    return parse_ports(get_settings().services_ports)


def _services(data_dir: Path | None, ports: dict[str, int] | None = None) -> list[Service]:
    """The four services on ``ports`` (default: the settings'); one that runs keeps the port its
    ``up`` recorded, and without ``ports`` so does a recorded one that stopped."""
    root = services_dir(data_dir)
    out = []
    for name, cls in _CLASSES.items():
        svc = cls(root, (ports or _settings_ports())[name])
        recorded = svc.state().get("port")
        if isinstance(recorded, int) and (ports is None or svc.running_pid() is not None):
            svc.port = recorded
        out.append(svc)
    return out


_held: dict[Path, int] = {}  # lock files this process holds -> depth (the lock is reentrant in-process)
_held_guard = threading.Lock()


@contextlib.contextmanager
def lock(data_dir: Path | None = None):  # noqa: ANN201
    """An exclusive lock on the services directory, shared with parallel test sessions and
    `cxr services` commands; reentrant within one process."""
    root = services_dir(data_dir)
    root.mkdir(parents=True, exist_ok=True)
    path = root / ".lock"
    with _held_guard:
        depth = _held.get(path, 0)
        if depth:
            _held[path] = depth + 1
    if depth:
        try:
            yield root
        finally:
            with _held_guard:
                _held[path] -= 1
        return
    with path.open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        with _held_guard:
            _held[path] = 1
        try:
            yield root
        finally:
            with _held_guard:
                _held.pop(path, None)
            fcntl.flock(fh, fcntl.LOCK_UN)


def missing_packages() -> list[str]:
    need = []
    if not _which("mariadbd", "/usr/sbin") or not _which("mariadb-install-db", "/usr/bin"):
        need.append("mariadb-server")
    if not _which("sshd", "/usr/sbin") or not _which("ssh-keygen", "/usr/bin"):
        need += ["openssh-server", "openssh-client"]
    return need


def ensure_packages() -> None:
    """Install missing Debian packages with apt-get when root; otherwise say what is missing."""
    need = missing_packages()
    if not need:
        return
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise ConfigError(f"missing programs; install the Debian packages {' '.join(need)} (as root: "
                          f"apt-get install -y {' '.join(need)})", setting="CXR_DATA_DIR")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for argv in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *need]):
        res = subprocess.run(argv, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False)
        if res.returncode != 0:
            tail = (res.stderr or res.stdout).strip().splitlines()[-1:] or ["?"]
            raise ConfigError(f"{' '.join(argv[:2])} failed: {tail[0]}", setting="CXR_DATA_DIR")


def env_file(data_dir: Path | None = None) -> Path:
    return services_dir(data_dir) / ENV_FILE


def read_env(path: Path) -> dict[str, str]:
    """Read a ``KEY=value`` file as written by :func:`up` (comments and blanks skipped)."""
    out: dict[str, str] = {}
    for line in Path(path).read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, _, value = line.partition("=")
            out[key.strip()] = value.strip().strip("'\"")
    return out


def _write_env(path: Path, values: dict[str, str]) -> None:
    lines = ["# Written by `cxr services up`: points cxr at the local servers. Do not commit.",
             "# Use: CXR_ENV_FILE=" + str(path) + " cxr ...   or   set -a; . " + str(path) + "; set +a", ""]
    lines += [f"{k}={v}" for k, v in values.items()]
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write("\n".join(lines) + "\n")
    os.replace(tmp, path)


def up(data_dir: Path | None = None, *, ports: dict[str, int] | None = None, echo=None,  # noqa: ANN001
       autostarted: bool = False) -> dict[str, str]:
    """Start every server (in parallel) unless running; write and return the services env.

    ``autostarted=True`` (the test fixture) marks the stack as started on demand, so the last
    test session using it stops it; a plain ``up`` clears that mark (the servers stay up).
    """
    ensure_packages()
    with lock(data_dir) as root:
        services = _services(data_dir, ports or _settings_ports())
        with ThreadPoolExecutor(max_workers=len(services)) as pool:
            futures = {svc.name: pool.submit(svc.start) for svc in services}
            errors = []
            for name, fut in futures.items():
                try:
                    outcome = fut.result()
                    if echo:
                        echo(f"{name}: {outcome}")
                except Exception as exc:  # noqa: BLE001 - report all, then fail with the first
                    errors.append(exc)
        if errors:
            for exc in errors[1:]:
                if echo:
                    echo(f"also: {exc}")
            raise errors[0]
        values: dict[str, str] = {}
        for svc in services:
            values.update(svc.env())
        _write_env(root / ENV_FILE, values)
        marker = root / AUTOSTART_MARKER
        if autostarted:
            marker.touch()
        else:
            marker.unlink(missing_ok=True)
        return values


def down(data_dir: Path | None = None) -> list[str]:
    """Stop every server this directory's ``up`` started; return the names stopped."""
    with lock(data_dir) as root:
        services = _services(data_dir)
        with ThreadPoolExecutor(max_workers=len(services)) as pool:
            stopped = [name for name, ok in zip([s.name for s in services], pool.map(Service.stop, services)) if ok]
        (root / ENV_FILE).unlink(missing_ok=True)
        (root / AUTOSTART_MARKER).unlink(missing_ok=True)
        return stopped


def status(data_dir: Path | None = None) -> list[ServiceStatus]:
    return [svc.status() for svc in _services(data_dir)]


def all_up(data_dir: Path | None = None) -> bool:
    return all(s.up for s in status(data_dir)) and env_file(data_dir).exists()


def running_env(data_dir: Path | None = None, *, export_aws: bool = True) -> dict[str, str]:
    """The env of the running local servers (for benchmarks and scripts), or a one-line error.

    With ``export_aws`` the S3 endpoint's test credentials go into ``os.environ`` so boto3's
    default chain finds them.
    """
    if not all_up(data_dir):
        raise ConfigError("the local services are not running: run `cxr services up` first", setting="CXR_DATA_DIR")
    env = read_env(env_file(data_dir))
    if export_aws:
        os.environ.update({k: v for k, v in env.items() if k.startswith("AWS_")})
    return env
