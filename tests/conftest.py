"""Shared fixtures for every test area (owned by the services engineer; do not edit elsewhere).

Contract (see docs): ``services``, ``make_settings``, ``db_engine`` [sqlite|mariadb],
``sqlite_engine``, ``mariadb_engine``, ``lake`` [local|s3], ``local_lake``, ``s3_lake``,
``warehouse_db``, ``ssh_target``; plus ``run_cxr`` (the CLI in a subprocess).

Isolation: every test gets ``CXR_DATA_DIR`` in its own tmp dir, no inherited ``CXR_*``
variables, no ``.env``, test AWS credentials, and a cleared ``get_settings`` cache, so a test
never touches the repository's ``var/``. Store fixtures hand out a fresh SQLite file / MariaDB
database (created, migrated, dropped), a fresh bucket, a fresh warehouse database name.

The real servers come from ``cxr services up`` (``make test`` starts them). When they are
not running, the ``services`` fixture starts them and the last test session using them stops
them again; servers started by ``cxr services up`` are left for ``cxr services down``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# Captured before any test overrides CXR_DATA_DIR: where `cxr services up` keeps the servers.
SERVICES_DATA_DIR = Path(os.environ.get("CXR_DATA_DIR") or REPO / "var").resolve()


def _unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:12]}"


# -- isolation for every test -------------------------------------------------------------

@pytest.fixture(autouse=True)
def _isolated_settings(tmp_path, monkeypatch):
    from cxr.config import Settings, get_settings
    from cxr.devtools.services import TEST_AWS

    for name in list(os.environ):
        if name.startswith("CXR_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("CXR_DATA_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("CXR_ENV_FILE", str(tmp_path / "no-such.env"))  # subprocesses: no .env
    monkeypatch.setitem(Settings.model_config, "env_file", None)  # this process: no .env
    for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN",
                 "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_REGION"):
        monkeypatch.delenv(name, raising=False)
    for name, value in TEST_AWS.items():
        monkeypatch.setenv(name, value)
    bundle = os.environ.get("AWS_CA_BUNDLE")
    if bundle is not None and not Path(bundle).is_file():  # a CA bundle boto3 cannot read
        monkeypatch.delenv("AWS_CA_BUNDLE")
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.fixture
def make_settings(tmp_path):
    """``make_settings(**overrides) -> Settings``: embedded defaults under this test's tmp data_dir."""
    from cxr.config import load_settings

    def make(**overrides):
        overrides.setdefault("data_dir", tmp_path / "var")
        return load_settings(**overrides)

    return make


@pytest.fixture
def run_cxr(tmp_path):
    """``run_cxr(*args, env=None, check=False) -> CompletedProcess``: the ``cxr`` CLI in a subprocess
    with this test's environment (plus ``env``), text output captured."""

    def run(*args: str, env: dict[str, str] | None = None, check: bool = False, timeout: float = 120):
        full_env = {**os.environ, **(env or {})}
        return subprocess.run([sys.executable, "-m", "cxr", *map(str, args)], env=full_env, capture_output=True,
                              text=True, timeout=timeout, check=check, cwd=tmp_path)

    return run


# -- the real servers -------------------------------------------------------------------------

@pytest.fixture(scope="session")
def services():
    """The running local servers' env (CXR_DB_URL, CXR_LAKE_URL, CXR_S3_ENDPOINT_URL, ...)."""
    from cxr.devtools import services as svc
    from cxr.errors import CxrError

    lease_dir = svc.services_dir(SERVICES_DATA_DIR) / "leases"
    lease = lease_dir / str(os.getpid())
    try:
        with svc.lock(SERVICES_DATA_DIR):
            if not svc.all_up(SERVICES_DATA_DIR):
                svc.up(SERVICES_DATA_DIR, autostarted=True)
            lease_dir.mkdir(exist_ok=True)
            lease.touch()
            env = svc.read_env(svc.env_file(SERVICES_DATA_DIR))
    except CxrError as exc:
        pytest.fail(f"cannot start the local servers (`cxr services up`): {exc}", pytrace=False)
    yield env
    with svc.lock(SERVICES_DATA_DIR) as root:
        lease.unlink(missing_ok=True)
        for other in lease_dir.iterdir():  # sessions that died without cleaning up
            if not (other.name.isdigit() and svc.pid_alive(int(other.name))):
                other.unlink(missing_ok=True)
        if not any(lease_dir.iterdir()) and (root / svc.AUTOSTART_MARKER).exists():
            svc.down(SERVICES_DATA_DIR)


@pytest.fixture(scope="session")
def services_data_dir() -> Path:
    """The data_dir whose ``services/`` holds the running servers (not the per-test tmp one)."""
    return SERVICES_DATA_DIR


@pytest.fixture(scope="session")
def ssh_target(services):
    """The local sshd: ``.host .port .user .key_file .known_hosts`` (a :class:`cxr.remote.SSHTarget`)."""
    from cxr.stores.remote import SSHTarget

    return SSHTarget(services["CXR_SSH_HOST"], int(services["CXR_SSH_PORT"]), services["CXR_SSH_USER"],
                     Path(services["CXR_SSH_KEY_FILE"]), Path(services["CXR_SSH_KNOWN_HOSTS"]))


# -- metadata DB -------------------------------------------------------------------------------

@pytest.fixture
def sqlite_engine(tmp_path):
    """A migrated, empty SQLite database in this test's tmp dir."""
    from cxr.stores import db

    engine = db.make_engine(f"sqlite:///{tmp_path / 'test-cxr.db'}")
    db.upgrade(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def mariadb_engine(services):
    """A migrated, empty MariaDB database of its own (``cxr_t_<random>``), dropped afterwards."""
    from sqlalchemy import text
    from sqlalchemy.engine import make_url

    from cxr.stores import db

    url = make_url(services["CXR_DB_URL"])
    name = _unique("cxr_t_")  # generated here, safe as an identifier
    admin = db.make_engine(url.render_as_string(hide_password=False), pool_size=1)
    with admin.begin() as conn:
        conn.execute(text(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"))
    engine = db.make_engine(url.set(database=name).render_as_string(hide_password=False))
    try:
        db.upgrade(engine)
        yield engine
    finally:
        engine.dispose()
        with admin.begin() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS `{name}`"))
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("mariadb", marks=pytest.mark.integration)])
def db_engine(request):
    """A migrated, empty DB engine; runs the test once on SQLite and once on MariaDB."""
    return request.getfixturevalue(f"{request.param}_engine")


# -- lake --------------------------------------------------------------------------------------

@pytest.fixture
def local_lake(tmp_path):
    """An empty local-directory lake."""
    from cxr.stores.lake import LocalLake

    return LocalLake(tmp_path / "lake")


@pytest.fixture
def s3_lake(services):
    """An empty S3 lake on a fresh bucket of the local S3 endpoint (emptied and removed afterwards)."""
    from cxr.devtools.services import s3_client
    from cxr.stores.lake import S3Lake

    endpoint = services["CXR_S3_ENDPOINT_URL"]
    bucket = _unique("cxr-t-")
    client = s3_client(endpoint)
    client.create_bucket(Bucket=bucket)
    yield S3Lake(bucket, endpoint_url=endpoint, region=services.get("CXR_S3_REGION"))
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        keys = [{"Key": obj["Key"]} for obj in page.get("Contents", [])]
        if keys:
            client.delete_objects(Bucket=bucket, Delete={"Objects": keys})
    client.delete_bucket(Bucket=bucket)


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.integration)])
def lake(request):
    """An empty lake; runs the test once on a local directory and once on the S3 endpoint."""
    return request.getfixturevalue(f"{request.param}_lake")


# -- warehouse ---------------------------------------------------------------------------------

@pytest.fixture
def warehouse_db(services):
    """A pymongo ``Database`` with a fresh name on the SecantusDB server (dropped afterwards)."""
    from cxr.stores.warehouse import connect

    client = connect(services["CXR_WAREHOUSE_URL"])
    name = _unique("cxr_t_")
    try:
        yield client[name]
    finally:
        client.drop_database(name)
        client.close()
