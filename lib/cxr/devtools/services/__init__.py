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
orthanc    Orthanc (Debian package)     4242    the hospital's PACS (REST on ``orthanc-http``, 8042);
                                                forwards new CR/DX instances to ``dicom``
dicom      ``cxr dicom listen``         11112   cxr's DICOM node on the DB and lake above
========== ============================ ======= ===============================================

``orthanc`` and ``dicom`` are optional: ``cxr services up orthanc dicom`` starts them after the
four others (the listener stores into their DB and lake and delivers its reports to Orthanc);
a plain ``up`` leaves them alone, ``down`` stops them too.

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
import os
import shutil
import subprocess
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from cxr.config import get_settings
from cxr.devtools.services.dicom import DicomListener, Orthanc
from cxr.devtools.services.process import HOST, Service, ServiceStatus, _which, pid_alive, port_open, terminate
from cxr.devtools.services.servers import BUCKET, DB_NAME, DB_USER, SERVERS, SSHD, S3, TEST_AWS, MariaDB, Warehouse, s3_client
from cxr.errors import ConfigError

__all__ = ["BUCKET", "DB_NAME", "DB_USER", "HOST", "NAMES", "OPTIONAL", "PORTS", "S3", "SSHD", "TEST_AWS", "DicomListener",
           "MariaDB", "Orthanc", "Service",
           "ServiceStatus", "Warehouse", "all_up", "down", "env_file", "lock", "parse_ports", "pid_alive", "port_open",
           "read_env", "running_env", "s3_client", "services_dir", "status", "terminate", "up"]

PORTS = {"mariadb": 3307, "s3": 5055, "warehouse": 27018, "sshd": 2222, "orthanc": 4242, "orthanc-http": 8042,
         "dicom": 11112}
NAMES = ("mariadb", "s3", "warehouse", "sshd")  # what a plain `up` starts
OPTIONAL = ("orthanc", "dicom")  # started when named, in this order, after NAMES
ENV_FILE = "services.env"
AUTOSTART_MARKER = "autostarted"  # present while the stack was started on demand by a test session


# -- the stack -----------------------------------------------------------------------------

def _data_dir(data_dir: Path | None) -> Path:
    return Path(data_dir) if data_dir is not None else get_settings().data_dir


def services_dir(data_dir: Path | None = None) -> Path:
    return (_data_dir(data_dir) / "services").resolve()


def parse_ports(spec: str | None) -> dict[str, int]:
    """``"mariadb=3307,s3=5055"`` -> ports, over :data:`PORTS`."""
    ports = dict(PORTS)
    for item in filter(None, (p.strip() for p in (spec or "").split(","))):
        name, _, value = item.partition("=")
        if name.strip() not in ports or not value.strip().isdigit():
            raise ConfigError(f"bad entry {item!r}; use name=port with names {', '.join(PORTS)}",
                              setting="CXR_SERVICES_PORTS")
        ports[name.strip()] = int(value)
    return ports


def _settings_ports() -> dict[str, int]:
    return parse_ports(get_settings().services_ports)


def _services(data_dir: Path | None, ports: dict[str, int] | None = None,
              names: tuple[str, ...] = NAMES) -> list[Service]:
    """The services ``names`` on ``ports`` (default: the settings'); one that runs keeps the port its
    ``up`` recorded, and without ``ports`` so does a recorded one that stopped."""
    root = services_dir(data_dir)
    use = ports or _settings_ports()
    out: list[Service] = []
    for name in names:
        svc = _make(name, root, use, data_dir)
        recorded = svc.state().get("port")
        if isinstance(recorded, int) and (ports is None or svc.running_pid() is not None):
            svc.port = recorded
        out.append(svc)
    return out


def _make(name: str, root: Path, ports: dict[str, int], data_dir: Path | None) -> Service:
    if name == "orthanc":
        return Orthanc(root, ports["orthanc"], http_port=ports["orthanc-http"], listener=("CXR", ports["dicom"]))
    if name == "dicom":
        return DicomListener(root, ports["dicom"], data_dir=_data_dir(data_dir),
                             models_dir=get_settings().models_dir, orthanc_port=ports["orthanc"])
    return SERVERS[name](root, ports[name])


def _running_optional(data_dir: Path | None) -> list[Service]:
    return [svc for svc in _services(data_dir, names=OPTIONAL) if svc.running_pid() is not None]


_held: dict[Path, int] = {}  # lock files this process holds -> depth (the lock is reentrant in-process)
_held_guard = threading.Lock()


@contextlib.contextmanager
def lock(data_dir: Path | None = None) -> Iterator[Path]:
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


def up(data_dir: Path | None = None, *, ports: dict[str, int] | None = None,
       echo: Callable[[str], None] | None = None, autostarted: bool = False,
       extras: tuple[str, ...] = ()) -> dict[str, str]:
    """Start every server (in parallel) unless running, then the optional ``extras`` (``orthanc``,
    ``dicom``) one after the other; write and return the services env.

    ``autostarted=True`` (the test fixture) marks the stack as started on demand, so the last
    test session using it stops it; a plain ``up`` clears that mark (the servers stay up).
    """
    unknown = [e for e in extras if e not in OPTIONAL]
    if unknown:
        raise ConfigError(f"unknown service {unknown[0]!r}; the optional ones are {', '.join(OPTIONAL)}",
                          setting="CXR_SERVICES_PORTS")
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
        for svc in _services(data_dir, ports or _settings_ports(), names=tuple(n for n in OPTIONAL if n in extras)):
            if isinstance(svc, DicomListener):
                svc.base_env = dict(values)
            outcome = svc.start()
            if echo:
                echo(f"{svc.name}: {outcome}")
        _write_env(root / ENV_FILE, values)  # the four servers' settings (the listener has its own)
        marker = root / AUTOSTART_MARKER
        if autostarted:
            marker.touch()
        else:
            marker.unlink(missing_ok=True)
        return values


def down(data_dir: Path | None = None) -> list[str]:
    """Stop every server this directory's ``up`` started (the optional ones too); return the names stopped."""
    with lock(data_dir) as root:
        extra = [svc.name for svc in reversed(_services(data_dir, names=OPTIONAL)) if svc.stop()]  # listener first
        services = _services(data_dir)
        with ThreadPoolExecutor(max_workers=len(services)) as pool:
            stopped = [name for name, ok in zip([s.name for s in services], pool.map(Service.stop, services)) if ok]
        stopped = extra + stopped
        (root / ENV_FILE).unlink(missing_ok=True)
        (root / AUTOSTART_MARKER).unlink(missing_ok=True)
        return stopped


def status(data_dir: Path | None = None) -> list[ServiceStatus]:
    """The four servers, and the optional ones that run."""
    return [svc.status() for svc in _services(data_dir) + _running_optional(data_dir)]


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
