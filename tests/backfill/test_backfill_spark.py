"""The backfill on real local Spark (local[2]) against the real servers: MariaDB, the S3 endpoint.

A folder and an s3:// prefix as SOURCE; refusals in the lake's parquet; a re-run that stores nothing;
a run whose task keeps failing (a MariaDB trigger refuses one file's image row, as a dying DB would)
fails the job, and the re-run after the fault finishes the rest with no duplicate; the Glue/EMR
entry script on plain PySpark.
"""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from sqlalchemy import func, select, text

from cxr.backfill.job import run_backfill
from cxr.dicom.deid import keyed_hash, load_key
from cxr.stores import layout
from cxr.stores.catalog import Stores
from cxr.stores.schema import image, transaction

pytestmark = pytest.mark.integration
GLUE_DIR = Path(__file__).resolve().parents[2] / "glue"


def _counts(engine) -> tuple[int, int, int]:
    with engine.connect() as c:
        n_img = c.execute(select(func.count()).select_from(image)).scalar_one()
        n_tx = c.execute(select(func.count()).select_from(transaction)).scalar_one()
        n_sha = c.execute(select(func.count(func.distinct(image.c.sha256)))).scalar_one()
    return int(n_img), int(n_tx), int(n_sha)


def test_a_folder_backfill_on_local2_stores_refuses_and_a_rerun_stores_nothing(spark, export, mariadb_engine, s3_lake,
                                                                              backfill_settings):
    root, n_good, bad = export(8)
    settings = backfill_settings(mariadb_engine, s3_lake)
    stores = Stores.open(settings, engine=mariadb_engine, lake=s3_lake)
    report = run_backfill(str(root), stores=stores, spark=spark, files_per_task=2, progress=False)
    r = report.result
    assert report.total == n_good + len(bad) and report.partitions == 6 and report.master == "local[2]"
    assert (r.files, r.stored, r.new_images, r.skipped, len(r.refused)) == (report.total, n_good, n_good, 0, len(bad))
    assert _counts(mariadb_engine) == (n_good, n_good, n_good)
    with mariadb_engine.connect() as c:
        assert set(c.execute(select(transaction.c.source, transaction.c.run_id)).all()) == {("backfill", report.run_id)}
    assert len(list(s3_lake.list("images/"))) == n_good and len(list(s3_lake.list("renditions/"))) == n_good

    refusals = pq.read_table(io.BytesIO(s3_lake.get(layout.backfill_refusals_key(report.run_id)))).to_pylist()
    assert sorted(Path(x["location"]).name for x in refusals) == sorted(bad)
    assert all(x["reason"] and "\n" not in x["reason"] for x in refusals)
    record = json.loads(s3_lake.get(layout.backfill_record_key(report.run_id)))
    assert record["stored"] == n_good and record["refused"] == len(bad) and record["files"] == report.total

    again = run_backfill(str(root), stores=stores, spark=spark, files_per_task=2, progress=False)
    assert (again.result.stored, again.result.new_images, again.result.skipped) == (0, 0, n_good)
    assert again.result.decode_s == 0.0 and _counts(mariadb_engine) == (n_good, n_good, n_good)


def test_an_s3_prefix_is_a_source(spark, export, tmp_path, mariadb_engine, s3_lake, backfill_settings):
    root, n_good, bad = export(4)
    for p in sorted(root.rglob("*")):  # the archive: the same bucket, under export/ (never a content prefix)
        if p.is_file():
            s3_lake.put(f"export/{p.relative_to(root).as_posix()}", p.read_bytes())
    settings = backfill_settings(mariadb_engine, s3_lake)
    stores = Stores.open(settings, engine=mariadb_engine, lake=s3_lake)
    report = run_backfill(f"s3://{s3_lake.bucket}/export/", stores=stores, spark=spark, files_per_task=3,
                          progress=False)
    assert report.total == n_good + len(bad)  # .hidden/ is skipped on S3 as in a folder
    assert (report.result.stored, len(report.result.refused)) == (n_good, len(bad))
    assert _counts(mariadb_engine) == (n_good, n_good, n_good)


def test_a_failing_task_fails_the_job_and_the_rerun_finishes_without_duplicates(spark, export, mariadb_engine,
                                                                                s3_lake, backfill_settings):
    root, n_good, _bad = export(10)
    settings = backfill_settings(mariadb_engine, s3_lake, deid_key="a-test-key-for-this-run-only")
    stores = Stores.open(settings, engine=mariadb_engine, lake=s3_lake)
    victim = keyed_hash(load_key(settings), "upload", (root / "studies" / "img006.dcm").read_bytes())
    with mariadb_engine.begin() as c:  # the DB refuses this one upload, every attempt (values are hex: no quoting)
        c.execute(text(f"CREATE TRIGGER refuse_one BEFORE INSERT ON image FOR EACH ROW "
                       f"IF NEW.upload_key = '{victim}' THEN SIGNAL SQLSTATE '45000' "
                       f"SET MESSAGE_TEXT = 'simulated failure'; END IF"))
    with pytest.raises(Exception, match="simulated failure"):
        run_backfill(str(root), stores=stores, spark=spark, files_per_task=1, progress=False)
    n_img, n_tx, _ = _counts(mariadb_engine)
    assert 0 < n_img < n_good and n_img == n_tx  # some stored, never half a prediction
    with mariadb_engine.begin() as c:
        c.execute(text("DROP TRIGGER refuse_one"))
    rerun = run_backfill(str(root), stores=stores, spark=spark, files_per_task=1, progress=False)
    # a task cancelled by the abort may still finish the file it had started: at least n_img are skipped
    assert rerun.result.skipped >= n_img and rerun.result.skipped + rerun.result.stored == n_good
    assert rerun.result.stored >= 1  # the refused upload, at least
    assert _counts(mariadb_engine) == (n_good, n_good, n_good)


def test_the_glue_entry_script_runs_on_plain_pyspark(spark, export, tmp_path, mariadb_engine, s3_lake,
                                                     backfill_settings, monkeypatch):
    import sys

    root, n_good, bad = export(3)
    settings = backfill_settings(mariadb_engine, s3_lake)
    registry = tmp_path / "registry"
    shutil.copytree(settings.models_dir / settings.model_name, registry / settings.model_name)
    for name, value in (("CXR_DB_URL", settings.db_url), ("CXR_S3_ENDPOINT_URL", settings.s3_endpoint_url)):
        monkeypatch.setenv(name, value)
    monkeypatch.syspath_prepend(str(GLUE_DIR))
    sys.modules.pop("backfill_job", None)
    import backfill_job

    report = backfill_job.main(["--source", str(root), "--lake-url", s3_lake.url, "--models-url",
                                registry.as_uri(), "--files-per-task", "2", "--run-id", "backfill-glue-1",
                                "--TempDir", "s3://ignored/"], spark=spark, lake=s3_lake)
    assert report.run_id == "backfill-glue-1" and report.result.stored == n_good
    assert len(report.result.refused) == len(bad)
    assert s3_lake.exists(layout.backfill_record_key("backfill-glue-1"))


def test_the_cli_backfills_reports_refusals_and_lists_runs(export, run_cxr):
    root, n_good, bad = export(3)
    env = {"CXR_MODELS_DIR": str(GLUE_DIR.parent / "models")}
    assert run_cxr("db", "upgrade", env=env).returncode == 0
    res = run_cxr("backfill", str(root), "--master", "local[1]", "--files-per-task", "2", "--json", env=env, timeout=300)
    assert res.returncode == 3, res.stderr  # files were refused: exit 3, after the run finished
    record = json.loads(res.stdout)
    assert (record["stored"], record["refused"], record["files"]) == (n_good, len(bad), n_good + len(bad))
    assert record["master"] == "local[1]" and record["partitions"] == 3 and "Traceback" not in res.stderr
    again = run_cxr("backfill", str(root), "--master", "local[1]", env=env, timeout=300)
    assert again.returncode == 3 and f"skipped {n_good} already stored" in again.stdout
    assert sum(1 for line in again.stderr.splitlines() if line.startswith("cxr: refused ")) == len(bad)
    runs = run_cxr("backfill", "--runs", env=env)
    assert runs.returncode == 0 and record["run_id"] in runs.stdout and len(runs.stdout.strip().splitlines()) == 2


def test_a_killed_cli_backfill_is_finished_by_the_next_run_without_duplicates(tmp_path, run_cxr):
    import os
    import signal
    import subprocess
    import sys
    import time

    from backfill_factory import j2k_dicom

    from cxr.stores import db

    root = tmp_path / "export"
    root.mkdir()
    n = 40
    for i in range(n):
        (root / f"cr{i:03d}.dcm").write_bytes(j2k_dicom(5000 + i, 384))
    env = {**os.environ, "CXR_MODELS_DIR": str(GLUE_DIR.parent / "models")}
    assert run_cxr("db", "upgrade", env=env).returncode == 0
    engine = db.make_engine(f"sqlite:///{tmp_path / 'var' / 'cxr.db'}")
    proc = subprocess.Popen([sys.executable, "-m", "cxr", "backfill", str(root), "--master", "local[1]",
                             "--files-per-task", "1"], env=env, cwd=tmp_path, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 240
        while _counts(engine)[0] < 3 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGKILL)  # the driver, its JVM and the Python workers, mid-run
        proc.wait(30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    killed_at = _counts(engine)[0]
    assert 3 <= killed_at < n, "the run should be killed while it works"
    res = run_cxr("backfill", str(root), "--master", "local[1]", "--json", env=env, timeout=300)
    assert res.returncode == 0, res.stderr
    record = json.loads(res.stdout)
    assert record["skipped"] >= killed_at and record["skipped"] + record["stored"] == n
    assert _counts(engine) == (n, n, n)
    engine.dispose()
