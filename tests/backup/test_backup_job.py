"""The backup job on local Spark against SQLite and MariaDB: write, verify, restore, purge, crash + re-run."""

from __future__ import annotations

import pytest

from cxr.backup.job import run_backup
from cxr.stores.backup_reader import committed_runs, read_backup
from cxr.errors import IntegrityError

pytestmark = [pytest.mark.integration,
              pytest.mark.filterwarnings("ignore:PySpark does not yet fully support pandas:FutureWarning")]


def _run(make_settings, history, lake, spark, **kw):  # noqa: ANN001, ANN202
    return run_backup(make_settings(), before=kw.pop("before", "2024-03-01"), spark=spark, engine=history["engine"],
                      lake=lake, num_partitions=2, **kw)


def test_backup_verify_restore_then_guarded_purge(make_settings, history, local_lake, spark, warehouse_db, bk):
    from cxr.stores.watermark import set_watermark

    engine = history["engine"]
    expected = bk.db_rows(engine, before=bk.CUTOFF)
    before_counts = bk.table_counts(engine)

    report = _run(make_settings, history, local_lake, spark)
    m = report.manifest
    assert m is not None and report.planned["transactions"] == 4
    # rows in == rows in parquet, the empty-box transaction included, nothing newer than the cutoff
    assert m.summary["rows"] == len(expected) == 7
    assert m.summary["empty_transactions"] == 1
    restored = read_backup(local_lake)
    assert bk.frame_rows(restored) == expected
    assert set(restored["transaction_id"]) == history["old_tx"]
    empty = restored[restored["transaction_id"] == history["empty_tx"]]
    assert len(empty) == 1 and empty["pred_bbox_id"].isna().all()
    # year/month partitions, files sorted by image_id, one file per partition
    assert {(p["year"], p["month"]) for p in m.partitions} == {(2023, 12), (2024, 1), (2024, 2)}
    assert len(m.files) == 3 and all("/year=" in f["key"] and "/month=" in f["key"] for f in m.files)
    assert all(c["ok"] for c in report.verification)
    assert bk.table_counts(engine) == before_counts  # no --purge: the DB is untouched
    # restore of one image
    one = read_backup(local_lake, image_ids=[2])
    assert set(one["image_id"]) == {2} and len(one) == 3

    # purge guard: the warehouse has loaded only up to transaction 2 -> refused, nothing deleted
    set_watermark(warehouse_db, 2)
    with pytest.raises(IntegrityError, match="watermark"):
        _run(make_settings, history, local_lake, spark, purge_db=True, warehouse=warehouse_db)
    assert bk.table_counts(engine) == before_counts

    # watermark past the backed-up ids: the pending run is verified again and purged; no new run
    set_watermark(warehouse_db, 6)
    report = _run(make_settings, history, local_lake, spark, purge_db=True, warehouse=warehouse_db)
    assert report.manifest is None and report.pending_runs == [m.run_id]
    assert report.purged == {"pred_bounding_box": 6, "transaction": 4, "image": 2}
    after = bk.table_counts(engine)
    assert after["transaction"] == history["new_tx"]
    assert after["image"] == history["kept_images"]
    assert after["pred_bounding_box"] == before_counts["pred_bounding_box"] - history["old_boxes"]
    assert {r[9] for r in bk.db_rows(engine)} == history["new_tx"]  # column 9: transaction_id
    # the backup still holds everything that left the DB
    assert bk.frame_rows(read_backup(local_lake)) == expected
    # a further run finds nothing to do and writes nothing
    again = _run(make_settings, history, local_lake, spark, purge_db=True, warehouse=warehouse_db)
    assert again.manifest is None and again.pending_runs == [] and len(committed_runs(local_lake)) == 1


def test_killed_after_write_before_purge_reruns_cleanly(make_settings, history, local_lake, spark, bk):
    engine = history["engine"]
    expected = bk.db_rows(engine, before=bk.CUTOFF)

    class Killed(Exception):
        pass

    def kill(_manifest):  # noqa: ANN001, ANN202
        raise Killed

    with pytest.raises(Killed):
        _run(make_settings, history, local_lake, spark, purge_db=True, force=True, after_write=kill)
    assert len(committed_runs(local_lake)) == 1
    assert bk.table_counts(engine)["transaction"] == history["old_tx"] | history["new_tx"]  # nothing purged
    # a crash during another write leaves files without _SUCCESS: invisible, then removed
    local_lake.put("backup/month/run=crashed/year=2024/month=1/part-0.parquet", b"not parquet")

    report = _run(make_settings, history, local_lake, spark, purge_db=True, force=True)
    assert report.cleaned == ["backup/month/run=crashed/"]
    assert report.manifest is None  # nothing new: the pending run covers it; no duplicate written
    assert report.purged["transaction"] == 4
    restored = read_backup(local_lake)
    assert bk.frame_rows(restored) == expected  # no duplicates, no loss
    assert sum(m.summary["rows"] for m in committed_runs(local_lake)) == len(expected)  # stored once
    assert bk.table_counts(engine)["transaction"] == history["new_tx"]
