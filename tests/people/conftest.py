"""Fixtures for the people tests (logins, audit, review, monitoring); the builders live in people_factory."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "ingest"))

import os  # noqa: E402
import subprocess  # noqa: E402

import pytest  # noqa: E402


@pytest.fixture
def cli(tmp_path):
    """``cli(*args, env=None, input_text=None, check=False)``: the ``cxr`` CLI in a subprocess with this
    test's environment, stdin from ``input_text`` (the shared ``run_cxr`` has no stdin)."""

    def run(*args: str, env: dict[str, str] | None = None, input_text: str | None = None, check: bool = False,
            timeout: float = 180) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "cxr", *map(str, args)], env={**os.environ, **(env or {})},
                              input=input_text if input_text is not None else "", capture_output=True, text=True,
                              timeout=timeout, check=check, cwd=tmp_path)

    return run


@pytest.fixture(scope="session")
def spark():
    """One local[2] SparkSession for the people tests that run the real backup (as tests/backup does)."""
    from cxr.backup.spark import spark_session
    from cxr.config import load_settings

    session = spark_session(load_settings(), master="local[2]")
    session.conf.set("spark.sql.shuffle.partitions", "2")
    yield session
    session.stop()


@pytest.fixture
def models_dir():
    """The checkout's model registry: e2e and integration tests use the real ONNX model."""
    from ingest_factory import require_model

    return require_model()


@pytest.fixture
def db(tmp_path):
    """The SQLite DB under the test's var/ (where `cxr dashboard` with dashboard_env finds it), migrated."""
    from cxr.stores.db import make_engine, upgrade

    engine = make_engine(f"sqlite:///{tmp_path / 'var' / 'cxr.db'}")
    upgrade(engine)
    yield engine
    engine.dispose()
