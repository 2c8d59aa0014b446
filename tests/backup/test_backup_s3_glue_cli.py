"""The Glue entry script on plain Spark (no awsglue here) writing the week layout to the S3 lake;
then the CLI reads it back (restore, runs, dry run) in a subprocess, without Spark."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from cxr.stores.backup_reader import committed_runs, read_backup

pytestmark = [pytest.mark.integration,
              pytest.mark.filterwarnings("ignore:PySpark does not yet fully support pandas:FutureWarning")]

GLUE_SCRIPT = Path(__file__).resolve().parents[2] / "glue" / "backup_job.py"


def _glue_module():  # noqa: ANN202
    spec = importlib.util.spec_from_file_location("backup_job", GLUE_SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("db_engine", ["sqlite"], indirect=True)
def test_glue_script_week_layout_on_s3_then_cli_restore(history, s3_lake, spark, services, make_settings, run_cxr, bk,
                                                        monkeypatch):
    endpoint = services["CXR_S3_ENDPOINT_URL"]
    monkeypatch.setenv("CXR_S3_ENDPOINT_URL", endpoint)
    engine = history["engine"]
    report = _glue_module().main(["--JOB_NAME", "t", "--before", "2024-03-01", "--layout", "week", "--num-partitions", "2"],
                                 spark=spark, engine=engine, lake=s3_lake)
    m = report.manifest
    # ISO weeks: 2023-12-31 is a Sunday -> 2023-W52; Jan 10 -> W2, Jan 20 -> W3, Feb 3 -> W5
    assert {(p["year"], p["week"]) for p in m.partitions} == {(2023, 52), (2024, 2), (2024, 3), (2024, 5)}
    keys = {i.key for i in s3_lake.list("backup/")}
    assert f"backup/manifests/{m.run_id}.json" in keys and m.success_key in keys
    assert all(f["key"] in keys for f in m.files) and len(m.files) == 4
    assert bk.frame_rows(read_backup(s3_lake)) == bk.db_rows(engine, before=bk.CUTOFF)
    assert [r.run_id for r in committed_runs(s3_lake)] == [m.run_id]

    env = {"CXR_LAKE_URL": f"s3://{s3_lake.bucket}", "CXR_S3_ENDPOINT_URL": endpoint,
           "CXR_DB_URL": engine.url.render_as_string(hide_password=False)}
    out = run_cxr("backup", "restore", "2", "1", env=env)
    assert out.returncode == 0, out.stderr
    assert "6 rows, 3 transactions, 2 images" in out.stderr  # image 1: tx 1 (2 boxes) + tx 2 (none); image 2: 3 boxes
    missing = run_cxr("backup", "restore", "3", env=env)  # image 3 has only a recent transaction
    assert missing.returncode == 3 and "cxr: error: not in any committed backup: image_id 3" in missing.stderr
    runs = run_cxr("backup", "runs", env=env)
    assert f"{m.run_id}  week     pending-purge" in runs.stdout
    dry = run_cxr("backup", "--before", "2024-03-01", "--dry-run", env=env)
    assert dry.returncode == 0, dry.stderr
    assert "to back up: 0 transactions" in dry.stdout and m.run_id in dry.stdout  # already backed up: pending
    assert bk.table_counts(engine)["transaction"] == history["old_tx"] | history["new_tx"]
