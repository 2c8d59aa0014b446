"""Orchestration fixtures: the Airflow environment (.venv-airflow, made by `make airflow-venv`)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from orch_helpers import AIRFLOW_VENV, REPO, airflow, base_env  # noqa: E402


@pytest.fixture(scope="session")
def airflow_venv() -> Path:
    """.venv-airflow, created with `make airflow-venv` when missing (about 2 minutes, ~850 MB)."""
    if not (AIRFLOW_VENV / "bin" / "airflow").exists():
        proc = subprocess.run(["make", "-C", str(REPO), "airflow-venv"], capture_output=True, text=True, timeout=1800)
        if proc.returncode != 0:
            pytest.fail(f"`make airflow-venv` failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}", pytrace=False)
    return AIRFLOW_VENV


@pytest.fixture(scope="session")
def airflow_home(airflow_venv, tmp_path_factory) -> Path:
    """A private AIRFLOW_HOME with a migrated SQLite metadata DB, shared by this session's tests."""
    home = tmp_path_factory.mktemp("airflow-home")
    proc = airflow("db", "migrate", env=base_env(home), timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (home / ".migrated").touch()
    return home
