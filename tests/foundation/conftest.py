"""Fixtures for the foundation tests: a TLS + SCRAM SecantusDB with a CA made at run time."""

from __future__ import annotations

import uuid

import pytest
from foundation_helpers import make_test_ca


@pytest.fixture(scope="module")
def secure_warehouse(tmp_path_factory):
    """SecantusDB over TLS (test CA made now) with SCRAM-SHA-256 auth required.

    Yields a dict: ``url`` (user + password, tls=true, no CA), ``ca`` (CA file), ``user``, ``password``, ``port``.
    """
    from pymongo import MongoClient
    from secantus import SecantusDBServer

    root = tmp_path_factory.mktemp("secure-warehouse")
    pem = make_test_ca(root)
    storage = str(root / "data")
    user, password = "cxr", uuid.uuid4().hex
    with SecantusDBServer(storage_path=storage, port=0) as bootstrap:  # users first, without --auth
        with MongoClient(bootstrap.uri, directConnection=True) as client:
            client.admin.command("createUser", user, pwd=password, roles=["root"], mechanisms=["SCRAM-SHA-256"])
    server = SecantusDBServer(storage_path=storage, port=0, require_auth=True,
                              tls_cert_file=str(pem["cert"]), tls_key_file=str(pem["key"]))
    server.start()
    port = server.address[1]
    try:
        yield {"url": f"mongodb://{user}:{password}@127.0.0.1:{port}/?tls=true&authMechanism=SCRAM-SHA-256"
                      "&directConnection=true",
               "ca": pem["ca"], "user": user, "password": password, "port": port}
    finally:
        server.stop()
