"""Rebuild from the backup parquet + the live DB after a purge, and the purge guard on the watermark.

The backup run is written with pyarrow in the backup job's exact layout (``backup/month/run=<id>/
year=/month=/*.parquet`` + manifest + ``_SUCCESS``), standing in for the Spark write; everything after
it is the backup engineer's real code: ``run_backup`` verifies that pending run, applies the
warehouse-watermark guard and purges, and ``read_backup`` reads it back for the rebuild.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from conftest import add_history, stored
from sqlalchemy import func, select

from cxr.backup.job import run_backup
from cxr.backup.steps import upload_dir
from cxr.backup.manifest import new_run_id, summarize_table
from cxr.stores.backup_reader import Manifest
from cxr.stores.layout import backup_run_prefix as run_prefix
from cxr.stores.layout import manifest_key
from cxr.stores.backup_reader import arrow_schema
from cxr.errors import IntegrityError
from cxr.stores import schema
from cxr.stores.queries import joined_rows
from cxr.warehouse import etl
from cxr.stores.watermark import get_watermark

pytestmark = pytest.mark.integration

CUTOFF = datetime(2024, 3, 1)


def write_backup_run(engine, lake, tmp_path, before: datetime) -> Manifest:  # noqa: ANN001
    """Back up every transaction older than ``before`` as the backup job lays it out (layout 'month')."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.dataset as ds

    with engine.connect() as c:
        rows = [dict(r._mapping) for r in c.execute(joined_rows(before=before))]
    table = pa.Table.from_pylist(rows, schema=arrow_schema())
    parts = table.append_column("year", pc.year(table["time"])).append_column("month", pc.month(table["time"]))
    out = tmp_path / "backup-out"
    ds.write_dataset(parts, out, format="parquet", partitioning=["year", "month"], partitioning_flavor="hive")
    run_id = new_run_id()
    files = upload_dir(lake, out, run_prefix("month", run_id))
    tids = table["transaction_id"].to_pylist()
    manifest = Manifest(run_id=run_id, layout="month", before=before.isoformat(), created_at=datetime.now(UTC).isoformat(),
                        source=engine.dialect.name, summary=summarize_table(table), files=files,
                        transaction_id_range=(min(tids), max(tids)), engine="pyarrow")
    lake.put(manifest_key(run_id), manifest.to_json(), content_type="application/json")
    lake.put(manifest.success_key, b"", content_type="text/plain")
    return manifest


def _count(engine, table) -> int:  # noqa: ANN001
    with engine.connect() as c:
        return c.execute(select(func.count()).select_from(table)).scalar_one()


def test_guard_then_purge_then_rebuild_equals_incremental(sqlite_engine, local_lake, warehouse_db, wh_settings, tmp_path):
    e = sqlite_engine
    h1 = add_history(e, new_images=4, tx_per_image=3, start=datetime(2024, 1, 2), step=timedelta(days=9))
    etl.run_incremental(wh_settings, engine=e, database=warehouse_db)
    assert get_watermark(warehouse_db) == 12
    # Back-dated transactions (an archive import): older than the cutoff, but above the watermark.
    h2 = add_history(e, images=h1["images"][:2], new_images=1, tx_per_image=1, start=datetime(2024, 2, 1))
    write_backup_run(e, local_lake, tmp_path, CUTOFF)
    tx_before = _count(e, schema.transaction)

    with pytest.raises(IntegrityError, match="above the warehouse watermark 12"):
        run_backup(wh_settings, before=CUTOFF, purge_db=True, engine=e, lake=local_lake, warehouse=warehouse_db)
    assert _count(e, schema.transaction) == tx_before  # refused: nothing deleted

    etl.run_incremental(wh_settings, engine=e, database=warehouse_db)
    assert get_watermark(warehouse_db) == max(h2["transactions"])
    report = run_backup(wh_settings, before=CUTOFF, purge_db=True, engine=e, lake=local_lake, warehouse=warehouse_db)
    assert report.purged["transaction"] > 0
    purged_image = h2["images"][-1]  # only back-dated history: it left the DB with the purge
    with e.connect() as c:
        assert c.execute(select(schema.image.c.image_id).where(schema.image.c.image_id == purged_image)).first() is None
        assert c.execute(select(func.min(schema.transaction.c.time))).scalar_one() >= CUTOFF

    add_history(e, images=h1["images"][2:], new_images=2, tx_per_image=2, start=datetime(2024, 6, 1, 9, 30, 0, 250999))
    incremental = etl.run_incremental(wh_settings, engine=e, database=warehouse_db)
    expected = stored(warehouse_db)
    assert incremental.transactions == 8 and len(expected) == 7

    # A rebuild into a fresh warehouse: the purged history comes back from the parquet.
    fresh = warehouse_db.client[warehouse_db.name + "_rb"]
    try:
        rebuilt = etl.run_rebuild(wh_settings, engine=e, database=fresh, lake=local_lake, batch_size=3)
        assert rebuilt.backup_rows > 0 and rebuilt.db_rows > 0
        assert stored(fresh) == expected
        assert get_watermark(fresh) == get_watermark(warehouse_db)
        assert fresh["images"].index_information()["image_id_unique"]["unique"]
        assert "images__rebuild" not in fresh.list_collection_names()
        # A DB-only load cannot do that: it lacks the purged history.
        etl.run_incremental(wh_settings, engine=e, database=fresh.client[fresh.name + "2"])
        assert len(stored(fresh.client[fresh.name + "2"])) < len(expected)
    finally:
        warehouse_db.client.drop_database(fresh.name)
        warehouse_db.client.drop_database(fresh.name + "2")

    # And a rebuild in place (swapped in with one rename) leaves the same documents.
    etl.run_rebuild(wh_settings, engine=e, database=warehouse_db, lake=local_lake)
    assert stored(warehouse_db) == expected


def test_guard_refuses_without_any_warehouse_load(sqlite_engine, local_lake, warehouse_db, wh_settings, tmp_path):
    add_history(sqlite_engine, new_images=2, tx_per_image=1, start=datetime(2024, 1, 5))
    write_backup_run(sqlite_engine, local_lake, tmp_path, CUTOFF)
    with pytest.raises(IntegrityError, match="no watermark"):
        run_backup(wh_settings, before=CUTOFF, purge_db=True, engine=sqlite_engine, lake=local_lake,
                   warehouse=warehouse_db)
    assert _count(sqlite_engine, schema.transaction) == 2


def test_rebuild_with_empty_backup_equals_incremental(sqlite_engine, local_lake, warehouse_db, wh_settings):
    add_history(sqlite_engine, new_images=3, tx_per_image=2)
    etl.run_incremental(wh_settings, engine=sqlite_engine, database=warehouse_db)
    expected = stored(warehouse_db)
    report = etl.run_rebuild(wh_settings, engine=sqlite_engine, database=warehouse_db, lake=local_lake)
    assert report.backup_rows == 0 and report.inserted == 3 and report.watermark_after == 6
    assert stored(warehouse_db) == expected

