"""Fixtures for the ingest tests: a detector test double, test settings, store pairs."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from ingest_factory import FakePredictor  # noqa: E402


@pytest.fixture
def fake_predictor():
    return FakePredictor()


@pytest.fixture
def settings(make_settings):
    return make_settings()


@pytest.fixture(params=[pytest.param("sqlite-local", marks=pytest.mark.unit),
                        pytest.param("mariadb-s3", marks=pytest.mark.integration)])
def stores(request):
    """(engine, lake): an empty SQLite + local lake, or an empty MariaDB database + S3 bucket."""
    db_kind, lake_kind = request.param.split("-")
    return request.getfixturevalue(f"{db_kind}_engine"), request.getfixturevalue(f"{lake_kind}_lake")

