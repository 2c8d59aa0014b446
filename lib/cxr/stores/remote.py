"""SSH to the bastion / ETL host: remote commands, SFTP copies and TCP tunnels.

Host keys are always checked against a known_hosts file (``CXR_SSH_KNOWN_HOSTS``, else
``~/.ssh/known_hosts``); an unknown or changed host key is refused, never auto-added.
Authentication is by private key (``CXR_SSH_KEY_FILE``) or, without one, the SSH agent and
the default keys in ``~/.ssh``.

- :func:`run_remote` runs a command, streams its output line by line and returns its exit status.
- :func:`put_file` / :func:`get_file` copy files over SFTP (uploads land atomically).
- :func:`open_tunnel` forwards a local loopback port to ``remote_host:remote_port`` as seen from
  the SSH host (sshtunnel), e.g. to reach a DocumentDB inside a VPC.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import shlex
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import paramiko
from sshtunnel import BaseSSHTunnelForwarderError, SSHTunnelForwarder

from cxr.config import Settings, get_settings
from cxr.errors import ConfigError, CxrError

CONNECT_TIMEOUT_S = 15.0


@dataclass(frozen=True)
class SSHTarget:
    """Where to SSH to and with which key / known_hosts."""

    host: str
    port: int = 22
    user: str | None = None
    key_file: Path | None = None
    known_hosts: Path | None = None

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> SSHTarget:
        s = settings or get_settings()
        if not s.ssh_host:
            raise ConfigError("no SSH host configured", setting="CXR_SSH_HOST")
        return cls(s.ssh_host, s.ssh_port, s.ssh_user, s.ssh_key_file, s.ssh_known_hosts)

    @classmethod
    def parse(cls, spec: str, *, key_file: Path | None = None, known_hosts: Path | None = None) -> SSHTarget:
        """``user@host[:port]`` (IPv6 as ``user@[::1]:22``)."""
        user, _, hostport = spec.rpartition("@")
        host, port = hostport, 22
        if hostport.startswith("["):
            host, _, rest = hostport[1:].partition("]")
            if rest.startswith(":"):
                port = _port(rest[1:], spec)
        elif hostport.count(":") == 1:
            host, _, p = hostport.partition(":")
            port = _port(p, spec)
        if not host:
            raise ConfigError(f"no host in {spec!r}; use user@host[:port]", setting="CXR_SSH_HOST")
        return cls(host, port, user or None, Path(key_file) if key_file else None,
                   Path(known_hosts) if known_hosts else None)

    @property
    def known_hosts_file(self) -> Path:
        return Path(self.known_hosts).expanduser() if self.known_hosts else Path("~/.ssh/known_hosts").expanduser()

    @property
    def host_key_name(self) -> str:
        """The name known_hosts files use for this host: ``host`` or ``[host]:port``."""
        return self.host if self.port == 22 else f"[{self.host}]:{self.port}"

    def __str__(self) -> str:
        return f"{self.user + '@' if self.user else ''}{self.host}:{self.port}"


def _port(text: str, spec: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ConfigError(f"bad port in {spec!r}", setting="CXR_SSH_PORT")
    return int(text)


@dataclass(frozen=True)
class RemoteResult:
    exit_status: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.exit_status == 0


class _UnknownHostKey(Exception):
    def __init__(self, hostname: str, key: paramiko.PKey) -> None:
        super().__init__(hostname)
        self.hostname = hostname
        self.key = key


class _RejectUnknownHosts(paramiko.MissingHostKeyPolicy):
    """Never trust a host key that is not in known_hosts (paramiko's AutoAddPolicy is never used)."""

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        raise _UnknownHostKey(hostname, key)


def _fingerprint(key: paramiko.PKey) -> str:
    return "SHA256:" + base64.b64encode(hashlib.sha256(key.asbytes()).digest()).decode().rstrip("=")


def _load_host_keys(target: SSHTarget) -> paramiko.HostKeys:
    path = target.known_hosts_file
    if not path.is_file():
        raise ConfigError(f"known_hosts file {path} does not exist", setting="CXR_SSH_KNOWN_HOSTS")
    try:
        return paramiko.HostKeys(str(path))
    except (OSError, paramiko.SSHException) as exc:
        raise ConfigError(f"cannot read known_hosts file {path}: {exc}", setting="CXR_SSH_KNOWN_HOSTS") from None


def _key_filename(target: SSHTarget) -> str | None:
    if target.key_file is None:
        return None
    path = Path(target.key_file).expanduser()
    if not path.is_file():
        raise ConfigError(f"SSH key file {path} does not exist", setting="CXR_SSH_KEY_FILE")
    return str(path)


def connect(target: SSHTarget, *, timeout: float = CONNECT_TIMEOUT_S) -> paramiko.SSHClient:
    """An authenticated ``paramiko.SSHClient`` whose host key matched known_hosts."""
    key_filename = _key_filename(target)
    host_keys = _load_host_keys(target)
    client = paramiko.SSHClient()
    for name, keys in host_keys.items():
        for key_type, key in keys.items():
            client.get_host_keys().add(name, key_type, key)
    client.set_missing_host_key_policy(_RejectUnknownHosts())
    try:
        client.connect(target.host, port=target.port, username=target.user, key_filename=key_filename,
                       timeout=timeout, banner_timeout=timeout, auth_timeout=timeout,
                       allow_agent=key_filename is None, look_for_keys=key_filename is None)
    except _UnknownHostKey as exc:
        client.close()
        raise ConfigError(
            f"host key of {exc.hostname} ({exc.key.get_name()} {_fingerprint(exc.key)}) is not in "
            f"{target.known_hosts_file}; verify the fingerprint and add it", setting="CXR_SSH_KNOWN_HOSTS") from None
    except paramiko.BadHostKeyException as exc:
        client.close()
        raise ConfigError(
            f"host key of {exc.hostname} does not match {target.known_hosts_file} (got {_fingerprint(exc.key)}): "
            "refusing to connect", setting="CXR_SSH_KNOWN_HOSTS") from None
    except paramiko.AuthenticationException:
        client.close()
        raise ConfigError(f"SSH authentication failed for {target}", setting="CXR_SSH_KEY_FILE") from None
    except (paramiko.SSHException, OSError) as exc:  # refused, unreachable, timeout, protocol
        client.close()
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError(f"cannot reach SSH host {target}: {reason}", setting="CXR_SSH_HOST") from None
    return client


@contextlib.contextmanager
def session(target: SSHTarget, *, timeout: float = CONNECT_TIMEOUT_S) -> Iterator[paramiko.SSHClient]:
    """``with session(target) as client:`` reuse one connection for several calls."""
    client = connect(target, timeout=timeout)
    try:
        yield client
    finally:
        client.close()


def _lines(buffer: str, chunk: str, emit: Callable[[str], None] | None) -> str:
    buffer += chunk
    *complete, rest = buffer.split("\n")
    if emit:
        for line in complete:
            emit(line)
    return rest


def run_remote(target: SSHTarget, command: str | list[str], *, env: dict[str, str] | None = None,
               cwd: str | None = None, timeout: float | None = None,
               on_stdout: Callable[[str], None] | None = None, on_stderr: Callable[[str], None] | None = None,
               check: bool = False, client: paramiko.SSHClient | None = None) -> RemoteResult:
    """Run ``command`` on the SSH host; stream each output line to the callbacks; return its exit status.

    ``command`` as a list is shell-quoted; ``env`` and ``cwd`` are applied in the remote shell.
    ``check=True`` raises :class:`CxrError` on a non-zero exit status.
    """
    cmd = shlex.join(command) if isinstance(command, list) else command
    if env:
        bad = [k for k in env if not k.isidentifier()]
        if bad:
            raise CxrError(f"bad environment variable name {bad[0]!r} for the remote command")
        cmd = "export " + " ".join(f"{k}={shlex.quote(str(v))}" for k, v in env.items()) + "; " + cmd
    if cwd:
        cmd = f"cd {shlex.quote(cwd)} && {cmd}"
    own = client is None
    client = client or connect(target)
    try:
        chan = client.get_transport().open_session()
        chan.exec_command(cmd)
        out, err, out_buf, err_buf = [], [], "", ""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            busy = False
            if chan.recv_ready():
                chunk = chan.recv(65536).decode(errors="replace")
                out.append(chunk)
                out_buf = _lines(out_buf, chunk, on_stdout)
                busy = True
            if chan.recv_stderr_ready():
                chunk = chan.recv_stderr(65536).decode(errors="replace")
                err.append(chunk)
                err_buf = _lines(err_buf, chunk, on_stderr)
                busy = True
            if not busy:
                if chan.exit_status_ready() and not chan.recv_ready() and not chan.recv_stderr_ready():
                    break
                if deadline is not None and time.monotonic() > deadline:
                    chan.close()
                    raise CxrError(f"remote command timed out after {timeout:g} s on {target}: {cmd[:80]}")
                time.sleep(0.02)
        status = chan.recv_exit_status()
        for buf, emit in ((out_buf, on_stdout), (err_buf, on_stderr)):
            if buf and emit:
                emit(buf)
        result = RemoteResult(status, "".join(out), "".join(err))
    finally:
        if own:
            client.close()
    if check and not result.ok:
        last = (result.stderr.strip().splitlines() or result.stdout.strip().splitlines() or [""])[-1]
        raise CxrError(f"remote command failed with exit status {result.exit_status} on {target}: {last}")
    return result


def put_file(target: SSHTarget, local: Path, remote: str, *, client: paramiko.SSHClient | None = None) -> None:
    """Upload ``local`` to ``remote`` (parent directories created); the file appears atomically."""
    own = client is None
    client = client or connect(target)
    try:
        with client.open_sftp() as sftp:
            parent = PurePosixPath(remote).parent
            _sftp_makedirs(sftp, parent)
            tmp = str(parent / f".tmp-{PurePosixPath(remote).name}")
            sftp.put(str(local), tmp)
            sftp.posix_rename(tmp, remote)
    finally:
        if own:
            client.close()


def get_file(target: SSHTarget, remote: str, local: Path, *, client: paramiko.SSHClient | None = None) -> None:
    """Download ``remote`` to ``local`` (written under a temp name, then renamed)."""
    own = client is None
    client = client or connect(target)
    local = Path(local)
    tmp = local.with_name(f".tmp-{local.name}")
    try:
        with client.open_sftp() as sftp:
            try:
                sftp.get(remote, str(tmp))
            except FileNotFoundError:
                raise CxrError(f"no file {remote} on {target}") from None
        tmp.replace(local)
    finally:
        tmp.unlink(missing_ok=True)
        if own:
            client.close()


def _sftp_makedirs(sftp: paramiko.SFTPClient, path: PurePosixPath) -> None:
    if str(path) in ("", ".", "/"):
        return
    try:
        sftp.stat(str(path))
    except FileNotFoundError:
        _sftp_makedirs(sftp, path.parent)
        sftp.mkdir(str(path))


@contextlib.contextmanager
def open_tunnel(target: SSHTarget, remote_host: str, remote_port: int, *, local_port: int = 0,
                timeout: float = CONNECT_TIMEOUT_S) -> Iterator[tuple[str, int]]:
    """Forward ``127.0.0.1:<local_port>`` (0 = any free port) to ``remote_host:remote_port`` via the SSH host.

    Yields ``(local_host, local_port)``. The SSH host's key is checked against known_hosts
    first (clear errors), and the tunnel's own connection is pinned to that key.
    """
    connect(target, timeout=timeout).close()  # preflight: host key, auth, reachability -> ConfigError
    known = _load_host_keys(target).lookup(target.host_key_name) or {}
    host_key = next(iter(known.values()), None)
    if host_key is None:  # pragma: no cover - the preflight refused it already
        raise ConfigError(f"no host key for {target.host_key_name} in {target.known_hosts_file}",
                          setting="CXR_SSH_KNOWN_HOSTS")
    forwarder = SSHTunnelForwarder(
        (target.host, target.port),
        ssh_username=target.user,
        ssh_pkey=_key_filename(target),
        ssh_host_key=host_key,
        ssh_config_file=None,
        allow_agent=target.key_file is None,
        host_pkey_directories=None if target.key_file is None else [],
        remote_bind_address=(remote_host, remote_port),
        local_bind_address=("127.0.0.1", local_port),
        set_keepalive=30.0,
    )
    try:
        forwarder.start()
    except (BaseSSHTunnelForwarderError, OSError) as exc:
        raise ConfigError(f"cannot open a tunnel via {target} to {remote_host}:{remote_port}: {exc}",
                          setting="CXR_SSH_HOST") from None
    try:
        yield "127.0.0.1", forwarder.local_bind_port
    finally:
        forwarder.stop()

