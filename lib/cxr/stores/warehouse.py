"""The warehouse adapter: pymongo against any MongoDB-wire server (Amazon DocumentDB in AWS).

``warehouse_url = "embedded"`` (the default) starts an in-process SecantusDB server with its
data under ``<data_dir>/warehouse`` for the life of the process. Any other value is a
``mongodb://`` URI, which may carry DocumentDB's options (``tls=true``, ``tlsCAFile=...``,
``retryWrites=false``); ``CXR_WAREHOUSE_TLS_CA_FILE`` is passed as ``tlsCAFile``.
TLS certificates are verified (pymongo's default); nothing here turns that off.
"""

from __future__ import annotations

import atexit
import threading
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from cxr.errors import ConfigError

_embedded_lock = threading.Lock()
_embedded: dict[str, object] = {}  # storage path -> running SecantusDBServer


def embedded_uri(storage_path: Path) -> str:
    """Start (once per process) an in-process SecantusDB on a free loopback port; return its URI."""
    key = str(Path(storage_path).resolve())
    with _embedded_lock:
        server = _embedded.get(key)
        if server is None:
            from secantus import SecantusDBServer

            Path(key).mkdir(parents=True, exist_ok=True)
            server = SecantusDBServer(storage_path=key, host="127.0.0.1", port=0)
            try:
                server.start()
            except Exception as exc:  # storage locked by another process, bad directory ...
                raise ConfigError(f"cannot start the embedded warehouse in {key}: {exc}", setting="CXR_WAREHOUSE_URL") from None
            _embedded[key] = server
            atexit.register(_stop_embedded, key)
        return server.uri  # type: ignore[attr-defined]


def _stop_embedded(key: str) -> None:
    server = _embedded.pop(key, None)
    if server is not None:
        try:
            server.stop()  # type: ignore[attr-defined]
        except Exception:  # noqa: BLE001 - best effort at exit
            pass


def client_options(url: str, tls_ca_file: Path | None = None) -> dict:
    """Extra pymongo options; checks that a named CA file exists before connecting."""
    query = parse_qs(urlsplit(url).query)
    given = {k.lower() for k in query}  # options in the URI win over these defaults
    opts: dict = {k: v for k, v in {"serverSelectionTimeoutMS": 10_000, "connectTimeoutMS": 10_000,
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


def connect(url: str, *, data_dir: Path = Path("var"), tls_ca_file: Path | None = None, check: bool = True):  # noqa: ANN201
    """A ``pymongo.MongoClient`` for ``url`` ('embedded' or mongodb://); checks the server answers."""
    from pymongo import MongoClient
    from pymongo.errors import ConfigurationError, OperationFailure, PyMongoError, ServerSelectionTimeoutError

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


def database_from_settings(settings=None):  # noqa: ANN001, ANN201
    """The warehouse ``Database`` named by the settings."""
    from cxr.config import get_settings

    s = settings or get_settings()
    client = connect(s.warehouse_url, data_dir=s.data_dir, tls_ca_file=s.warehouse_tls_ca_file)
    return client[s.warehouse_db]
