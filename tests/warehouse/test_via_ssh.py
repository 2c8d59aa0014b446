"""``cxr warehouse --via-ssh``: papermill on the "remote" host (the local sshd of `cxr services`)."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
from conftest import add_history, stored

from cxr.warehouse.remote_run import warehouse_command
from cxr.stores.watermark import get_watermark

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.unit
def test_remote_command_carries_the_parameters(make_settings):
    s = make_settings(ssh_remote_python=".venv/bin/python", ssh_remote_workdir="my checkout")
    cmd = warehouse_command(s, mode="rebuild", batch_size=250, dag_id="manual", logical_date="2024-01-01",
                            output="/tmp/out.ipynb")
    assert cmd.startswith("cd 'my checkout' && .venv/bin/python -m cxr notebook run warehouse_etl -q ")
    assert "--output /tmp/out.ipynb" in cmd and cmd.endswith("-p mode rebuild -p batch_size 250")
    assert "batch_size" not in warehouse_command(s, mode="incremental", batch_size=None, dag_id="d",
                                                 logical_date="2024-01-01")
    from cxr.errors import InputError

    with pytest.raises(InputError):
        warehouse_command(s, mode="full", batch_size=None, dag_id="d", logical_date="2024-01-01")


def _remote_checkout(tmp_path: Path, env: dict[str, str]) -> tuple[Path, Path]:
    """A "remote checkout": the notebook, and the settings file the remote run reads (its .env)."""
    workdir = tmp_path / "remote-checkout"
    (workdir / "notebooks").mkdir(parents=True)
    shutil.copy(REPO / "notebooks" / "warehouse_etl.ipynb", workdir / "notebooks")
    env_file = workdir / "remote.env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in env.items()))
    return workdir, env_file


@pytest.mark.integration
def test_via_ssh_runs_the_notebook_remotely_and_keeps_the_record(run_cxr, tmp_path, services, ssh_target,
                                                                   warehouse_db):
    from cxr.stores import db

    db_url = f"sqlite:///{tmp_path / 'remote.db'}"
    engine = db.make_engine(db_url)
    db.upgrade(engine)
    add_history(engine, new_images=3)
    engine.dispose()
    workdir, env_file = _remote_checkout(tmp_path, {
        "CXR_DB_URL": db_url, "CXR_WAREHOUSE_URL": services["CXR_WAREHOUSE_URL"],
        "CXR_WAREHOUSE_DB": warehouse_db.name, "CXR_DATA_DIR": str(tmp_path / "remote-var")})
    lake_dir = tmp_path / "local-lake"
    env = {"CXR_SSH_KEY_FILE": str(ssh_target.key_file), "CXR_SSH_KNOWN_HOSTS": str(ssh_target.known_hosts),
           "CXR_SSH_REMOTE_WORKDIR": str(workdir), "CXR_SSH_REMOTE_PYTHON": sys.executable,
           "CXR_LAKE_URL": lake_dir.as_uri()}
    spec = f"{ssh_target.user}@{ssh_target.host}:{ssh_target.port}"
    res = run_cxr("warehouse", "--via-ssh", spec, "--batch-size", "2", "--remote-env-file", str(env_file),
                  "--output", str(tmp_path / "copy.ipynb"), env=env, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    assert f"remote incremental on {ssh_target}: ok" in res.stdout
    assert len(stored(warehouse_db)) == 3 and get_watermark(warehouse_db) == 6
    records = sorted(lake_dir.glob("runs/manual/*/warehouse_etl.ipynb"))
    assert len(records) == 1 and records[0].with_suffix(".html").is_file()
    nb = json.loads(records[0].read_text())
    assert nb["metadata"]["papermill"]["parameters"] == {"mode": "incremental", "batch_size": 2}
    text = "".join("".join(o.get("text", "")) for c in nb["cells"] for o in c.get("outputs", []))
    assert "documents written: 3 (3 new" in text and "after:  6" in text and "'transactions':" in text
    assert (tmp_path / "copy.ipynb").read_bytes() == records[0].read_bytes()


@pytest.mark.integration
def test_via_ssh_refuses_an_unknown_host_key(run_cxr, tmp_path, ssh_target):
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    env = {"CXR_SSH_KEY_FILE": str(ssh_target.key_file), "CXR_SSH_KNOWN_HOSTS": str(empty)}
    res = run_cxr("warehouse", "--via-ssh", f"{ssh_target.user}@{ssh_target.host}:{ssh_target.port}", env=env)
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in res.stderr
    assert lines[0].startswith("cxr: error: CXR_SSH_KNOWN_HOSTS: host key of ") and "is not in" in lines[0]
