"""Pure parts of the backup: JDBC URL translation, id checksum, manifest, guard, arguments (no Spark, no servers)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from cxr.backup.job import parse_before
from cxr.backup.purge import check_watermark
from cxr.backup.spark import jdbc_options
from cxr.backup.manifest import compare, id_checksum, summarize_table
from cxr.stores.backup_reader import Manifest
from cxr.errors import ConfigError, InputError, IntegrityError

pytestmark = pytest.mark.unit


def test_jdbc_options_translate_sqlalchemy_urls(tmp_path):
    url, props = jdbc_options(f"sqlite:///{tmp_path}/x.db")
    assert url == f"jdbc:sqlite:{tmp_path}/x.db" and props == {"driver": "org.sqlite.JDBC"}
    url, props = jdbc_options("mysql+pymysql://app:s3cret@db.example:3307/cxr?charset=utf8mb4")
    assert url == "jdbc:mysql://db.example:3307/cxr"
    assert props == {"driver": "org.mariadb.jdbc.Driver", "user": "app", "password": "s3cret"}
    assert jdbc_options("mariadb+pymysql://u:p@h/d")[0] == "jdbc:mysql://h:3306/d"
    url, props = jdbc_options("mysql+pymysql://u:p@rds.example/cxr?ssl_ca=/etc/rds.pem")
    assert props["useSsl"] == "true" and props["serverSslCert"] == "/etc/rds.pem"
    with pytest.raises(ConfigError, match="CXR_DB_URL"):
        jdbc_options("sqlite://")
    with pytest.raises(ConfigError, match="CXR_DB_URL"):
        jdbc_options("postgresql://u@h/d")


def test_id_checksum_is_order_free_and_sees_missing_extra_and_duplicate_ids():
    ids = np.array([5, 1, 2**40 + 7, 3], dtype=np.int64)
    base = id_checksum(ids)
    assert base == id_checksum(ids[::-1])
    assert base["count"] == 4
    assert id_checksum(ids[:3]) != base
    assert id_checksum(np.append(ids, 3)) != base  # a duplicate changes sum and count
    assert id_checksum(np.array([5, 1, 2**40 + 8, 2])) != base  # same count, same sum, other ids
    assert id_checksum([]) == {"count": 0, "sum": 0, "sumsq": 0}


def test_summarize_table_and_compare():
    import pyarrow as pa

    t = pa.table({"image_id": [1, 1, 2], "transaction_id": [10, 10, 11], "pred_bbox_id": [100, 101, None]})
    s = summarize_table(t)
    assert (s["rows"], s["transactions"], s["boxes"], s["images"], s["empty_transactions"]) == (3, 2, 2, 2, 1)
    assert s["box_checksum"] == id_checksum([100, 101])
    rows = compare("r1", s, {**s, "boxes": 1})
    assert [r["check"] for r in rows if not r["ok"]] == ["boxes"]


def test_manifest_round_trip_and_keys():
    m = Manifest(run_id="20240101T000000Z-abcd", layout="month", before="2024-01-01T00:00:00", created_at="x",
                 source="sqlite", summary={"rows": 1}, partitions=[{"year": 2023, "month": 12, "rows": 1}],
                 files=[{"key": "backup/month/run=20240101T000000Z-abcd/year=2023/month=12/p.parquet", "size": 9}],
                 transaction_id_range=(1, 9))
    assert Manifest.from_json(m.to_json()) == m
    assert m.prefix == "backup/month/run=20240101T000000Z-abcd/" and m.success_key.endswith("/_SUCCESS")


def test_watermark_guard():
    ids = np.array([1, 2, 3])
    check_watermark(ids, 3, force=False)
    with pytest.raises(IntegrityError, match="1 backed-up transactions are above the warehouse watermark 2"):
        check_watermark(ids, 2, force=False)
    with pytest.raises(IntegrityError, match="no watermark"):
        check_watermark(ids, None, force=False)
    check_watermark(ids, None, force=True)
    check_watermark(np.array([], dtype=np.int64), None, force=False)  # nothing to purge


def test_parse_before(make_settings):
    s = make_settings(retention_days=10)
    assert parse_before("2024-03-01", s) == datetime(2024, 3, 1)
    assert parse_before("2024-03-01T12:00:00+02:00", s) == datetime(2024, 3, 1, 10)
    t0 = datetime.now(UTC).replace(tzinfo=None)
    assert t0 - timedelta(days=10) <= parse_before(None, s) <= datetime.now(UTC).replace(tzinfo=None) - timedelta(days=10)
    with pytest.raises(InputError, match="--before"):
        parse_before("last tuesday", s)


def test_glue_script_arguments():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "glue" / "backup_job.py"
    spec = importlib.util.spec_from_file_location("backup_job", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    a = mod.parse_args(["--JOB_NAME", "j", "--before", "2024-01-01", "--purge", "true", "--TempDir", "s3://t/"])
    assert (a.JOB_NAME, a.before, a.purge, a.force, a.layout) == ("j", "2024-01-01", True, False, "month")
    assert mod.start_glue_job("j", vars(a)) is None  # awsglue is not on PyPI: the script runs on plain Spark here


def test_notebook_entry_checks_engine_and_glue_job(make_settings):
    from cxr.backup.glue import glue_arguments
    from cxr.backup.job import run_stage

    with pytest.raises(InputError, match="engine"):
        run_stage("emr", settings=make_settings())
    with pytest.raises(ConfigError, match="CXR_GLUE_JOB_NAME"):
        run_stage("glue", settings=make_settings())
    assert glue_arguments(datetime(2024, 3, 1), purge_db=True, force=False, layout="week") == {
        "--before": "2024-03-01T00:00:00", "--purge": "true", "--force": "false", "--layout": "week"}


def test_missing_jdbc_jar_is_a_config_error(make_settings, tmp_path):
    from cxr.backup.spark import spark_session

    with pytest.raises(ConfigError, match="CXR_JDBC_JARS.*no-such.jar"):
        spark_session(make_settings(jdbc_jars=f"{tmp_path}/no-such.jar"))
