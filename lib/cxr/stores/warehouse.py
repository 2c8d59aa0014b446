"""The warehouse adapter: pymongo against any MongoDB-wire server (Amazon DocumentDB in AWS).

``warehouse_url = "embedded"`` (the default) starts an in-process SecantusDB server with its
data under ``<data_dir>/warehouse`` for the life of the process. Any other value is a
``mongodb://`` URI, which may carry DocumentDB's options (``tls=true``, ``tlsCAFile=...``,
``retryWrites=false``); ``CXR_WAREHOUSE_TLS_CA_FILE`` is passed as ``tlsCAFile``.
TLS certificates are verified (pymongo's default); nothing here turns that off.

This module is also the one owner of the SSH tunnel to the warehouse: :func:`open_warehouse`
goes through it when ``CXR_SSH_HOST`` is set (or when asked), with the bastion's host key
verified by :mod:`cxr.stores.remote`.
"""

from __future__ import annotations

import atexit
import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, parse_qsl, urlencode, urlsplit, urlunsplit

from pymongo import MongoClient
from pymongo.database import Database
from pymongo.errors import ConfigurationError, OperationFailure, PyMongoError, ServerSelectionTimeoutError
from secantus import SecantusDBServer

from cxr.config import Settings, get_settings, redact_url
from cxr.errors import ConfigError
from cxr.stores import remote

#: The collection of image documents (stage 4 writes it, stage 5 and the report read it).
IMAGES_COLLECTION = "images"

_embedded_lock = threading.Lock()
_embedded: dict[str, SecantusDBServer] = {}  # storage path -> running server


def embedded_uri(storage_path: Path) -> str:
    """Start (once per process) an in-process SecantusDB on a free loopback port; return its URI."""
    key = str(Path(storage_path).resolve())
    with _embedded_lock:
        server = _embedded.get(key)
        if server is None:
            Path(key).mkdir(parents=True, exist_ok=True)
            server = SecantusDBServer(storage_path=key, host="127.0.0.1", port=0)
            try:
                server.start()
            except Exception as exc:  # storage locked by another process, bad directory ...
                raise ConfigError(f"cannot start the embedded warehouse in {key}: {exc}", setting="CXR_WAREHOUSE_URL") from None
            _embedded[key] = server
            atexit.register(_stop_embedded, key)
        return server.uri


def _stop_embedded(key: str) -> None:
    server = _embedded.pop(key, None)
    if server is not None:
        try:
            server.stop()
        except Exception:  # noqa: BLE001 - best effort at exit
            pass


def client_options(url: str, tls_ca_file: Path | None = None) -> dict[str, Any]:
    """Extra pymongo options; checks that a named CA file exists before connecting."""
    query = parse_qs(urlsplit(url).query)
    given = {k.lower() for k in query}  # options in the URI win over these defaults
    opts: dict[str, Any] = {k: v for k, v in {"serverSelectionTimeoutMS": 10_000, "connectTimeoutMS": 10_000,
                                    "appname": "cxr"}.items() if k.lower() not in given}
    ca = tls_ca_file or (Path(query["tlsCAFile"][0]) if "tlsCAFile" in query else None)
    if ca is not None:
        if not Path(ca).is_file():
            raise ConfigError(f"TLS CA file {ca} does not exist",
                              setting="CXR_WAREHOUSE_TLS_CA_FILE" if tls_ca_file else "CXR_WAREHOUSE_URL")
        if tls_ca_file is not None:
            opts["tlsCAFile"] = str(tls_ca_file)
            opts["tls"] = True
    return opts


def connect(url: str, *, data_dir: Path = Path("var"), tls_ca_file: Path | None = None,
            check: bool = True) -> MongoClient:
    """A ``pymongo.MongoClient`` for ``url`` ('embedded' or mongodb://); checks the server answers."""
    if url == "embedded":
        url = embedded_uri(data_dir / "warehouse")
    opts = client_options(url, tls_ca_file)
    try:
        client = MongoClient(url, **opts)
        if check:
            client.admin.command("ping")
    except OperationFailure as exc:
        if exc.code == 18 or "auth" in str(exc).lower():
            raise ConfigError("authentication failed: wrong user or password", setting="CXR_WAREHOUSE_URL") from None
        raise ConfigError(f"warehouse refused: {exc}", setting="CXR_WAREHOUSE_URL") from None
    except ServerSelectionTimeoutError as exc:
        raise ConfigError(f"cannot reach the warehouse: {str(exc).split(',')[0]}", setting="CXR_WAREHOUSE_URL") from None
    except (ConfigurationError, PyMongoError, ValueError) as exc:
        raise ConfigError(f"bad warehouse URI: {exc}", setting="CXR_WAREHOUSE_URL") from None
    return client


def database_from_settings(settings: Settings | None = None) -> Database:
    """The warehouse ``Database`` named by the settings (directly; see :func:`open_warehouse` for the tunnel)."""
    s = settings or get_settings()
    client = connect(s.warehouse_url, data_dir=s.data_dir, tls_ca_file=s.warehouse_tls_ca_file)
    return client[s.warehouse_db]


# -- the warehouse through the bastion ------------------------------------------------------------
_TUNNEL_ONLY = "only a mongodb:// URL can go through the SSH tunnel (not 'embedded' or mongodb+srv://)"


def tunneled_url(url: str, local_port: int) -> str:
    """``url`` pointed at the tunnel's local end, with ``directConnection=true``.

    Without it pymongo discovers the replica set's advertised members and connects to those,
    bypassing the tunnel.
    """
    parts = urlsplit(url)
    if parts.scheme != "mongodb":
        raise ConfigError(_TUNNEL_ONLY, setting="CXR_WAREHOUSE_URL")
    userinfo = parts.netloc.rpartition("@")[0]
    netloc = (userinfo + "@" if userinfo else "") + f"127.0.0.1:{int(local_port)}"
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True)
             if k.lower() not in ("directconnection", "replicaset")]
    query.append(("directConnection", "true"))
    return urlunsplit((parts.scheme, netloc, parts.path or "/", urlencode(query), ""))


def warehouse_address(url: str) -> tuple[str, int]:
    """The (host, port) of a single-host mongodb:// URL: what the tunnel forwards to."""
    parts = urlsplit(url)
    if parts.scheme != "mongodb":
        raise ConfigError(_TUNNEL_ONLY, setting="CXR_WAREHOUSE_URL")
    if "," in parts.netloc.rpartition("@")[2]:
        raise ConfigError("a tunnel forwards to one host; name one warehouse host in the URL", setting="CXR_WAREHOUSE_URL")
    try:
        host, port = parts.hostname, parts.port
    except ValueError as exc:
        raise ConfigError(f"bad warehouse URL: {exc}", setting="CXR_WAREHOUSE_URL") from None
    if not host:
        raise ConfigError("the warehouse URL names no host", setting="CXR_WAREHOUSE_URL")
    return host, port or 27017


@contextlib.contextmanager
def warehouse_tunnel(settings: Settings) -> Iterator[str]:
    """Open the SSH tunnel to the warehouse (host key verified); yield the tunneled mongodb:// URL."""
    host, port = warehouse_address(settings.warehouse_url)
    with remote.open_tunnel(remote.SSHTarget.from_settings(settings), host, port) as (_, local_port):
        yield tunneled_url(settings.warehouse_url, local_port)


def use_tunnel(settings: Settings, via_tunnel: bool | None = None) -> bool:
    """Whether the warehouse is reached through the SSH tunnel (default: when CXR_SSH_HOST is set)."""
    if via_tunnel and not settings.ssh_host:
        raise ConfigError("--via-tunnel needs an SSH host", setting="CXR_SSH_HOST")
    return bool(settings.ssh_host) if via_tunnel is None else via_tunnel


@contextlib.contextmanager
def open_warehouse(settings: Settings, via_tunnel: bool | None = None) -> Iterator[Database]:
    """The warehouse Database, through the SSH tunnel when asked (default: when CXR_SSH_HOST is set)."""
    with contextlib.ExitStack() as stack:
        url = settings.warehouse_url
        if use_tunnel(settings, via_tunnel):
            url = stack.enter_context(warehouse_tunnel(settings))
        client = connect(url, data_dir=settings.data_dir, tls_ca_file=settings.warehouse_tls_ca_file)
        stack.callback(client.close)
        yield client[settings.warehouse_db]


def describe(settings: Settings, via_tunnel: bool | None = None) -> str:
    """Where the warehouse is, for reports and dataset cards (password masked)."""
    where = redact_url(settings.warehouse_url)
    if use_tunnel(settings, via_tunnel):
        user = f"{settings.ssh_user}@" if settings.ssh_user else ""
        where += f" through the SSH tunnel via {user}{settings.ssh_host}:{settings.ssh_port}"
    return where
