"""The warehouse ETL against SecantusDB over TCP (and once over TLS + SCRAM auth)."""

from __future__ import annotations

import threading
from datetime import datetime

import pytest
from conftest import add_history, stored
from sqlalchemy import func, select

from cxr.stores import schema
from cxr.warehouse import etl
from cxr.stores.watermark import clear_watermark, get_watermark

pytestmark = pytest.mark.integration


def _db_transactions(engine) -> dict[int, set[int]]:  # noqa: ANN001
    with engine.connect() as c:
        rows = c.execute(select(schema.transaction.c.image_id, schema.transaction.c.transaction_id)).all()
    out: dict[int, set[int]] = {}
    for iid, tid in rows:
        out.setdefault(int(iid), set()).add(int(tid))
    return out


def _doc_transactions(database) -> dict[int, list[int]]:  # noqa: ANN001
    return {d["image_id"]: [t["transaction_id"] for t in d["transactions"]] for d in stored(database)}


def test_three_runs_leave_identical_documents(db_engine, warehouse_db, wh_settings):
    add_history(db_engine, new_images=5, tx_per_image=3, boxes_per_tx=3)
    first = etl.run_incremental(wh_settings, engine=db_engine, database=warehouse_db, batch_size=2)
    assert (first.inserted, first.images, first.transactions) == (5, 5, 15)
    assert first.watermark_before is None and first.watermark_after == 15 == get_watermark(warehouse_db)
    docs = stored(warehouse_db)
    assert len(docs) == 5 and all(len(d["transactions"]) == 3 for d in docs)
    assert any(t["pred_bbox"] == [] for d in docs for t in d["transactions"])  # transactions without boxes kept
    # Re-running over the SAME rows (watermark forgotten) rewrites nothing: the writes themselves are idempotent.
    for _ in range(2):
        clear_watermark(warehouse_db)
        again = etl.run_incremental(wh_settings, engine=db_engine, database=warehouse_db, batch_size=2)
        assert (again.inserted, again.merged, again.transactions_added) == (0, 5, 0)
        assert stored(warehouse_db) == docs
    assert get_watermark(warehouse_db) == 15
    nothing = etl.run_incremental(wh_settings, engine=db_engine, database=warehouse_db)
    assert nothing.images == 0 and nothing.watermark_after == 15 and stored(warehouse_db) == docs
    index = warehouse_db["images"].index_information()["image_id_unique"]
    assert index["unique"] and index["key"] == [("image_id", 1)]


def test_new_transactions_merge_into_existing_documents(sqlite_engine, warehouse_db, wh_settings):
    h = add_history(sqlite_engine, new_images=3, tx_per_image=2)
    etl.run_incremental(wh_settings, engine=sqlite_engine, database=warehouse_db)
    before = {d["image_id"]: d for d in stored(warehouse_db)}
    later = datetime(2025, 5, 1, 12, 0, 0, 456789)
    h2 = add_history(sqlite_engine, images=[h["images"][0], h["images"][2]], new_images=1, tx_per_image=2, start=later)
    report = etl.run_incremental(wh_settings, engine=sqlite_engine, database=warehouse_db, batch_size=1)
    assert (report.inserted, report.merged, report.transactions_added) == (1, 2, 4)
    assert report.watermark_before == 6 and report.watermark_after == max(h2["transactions"])
    after = {d["image_id"]: d for d in stored(warehouse_db)}
    assert _doc_transactions(warehouse_db) == {k: sorted(v) for k, v in _db_transactions(sqlite_engine).items()}
    merged = after[h["images"][0]]
    assert merged["transactions"][:2] == before[h["images"][0]]["transactions"]  # old ones untouched, in order
    assert merged["updated_at"] == merged["transactions"][-1]["time"] > before[h["images"][0]]["updated_at"]
    assert merged["created_at"] == before[h["images"][0]]["created_at"]
    assert after[h["images"][1]] == before[h["images"][1]]  # an image with nothing new is not touched


def test_concurrent_runs_leave_no_duplicates(sqlite_engine, warehouse_db, wh_settings):
    h = add_history(sqlite_engine, new_images=6, tx_per_image=2)
    etl.run_incremental(wh_settings, engine=sqlite_engine, database=warehouse_db)
    add_history(sqlite_engine, images=h["images"][:4], new_images=8, tx_per_image=2)
    clear_watermark(warehouse_db)  # every run reads the whole history: inserts and merges all race
    start = threading.Barrier(4)
    reports, errors = [], []

    def one_run() -> None:
        try:
            start.wait()
            reports.append(etl.run_incremental(wh_settings, engine=sqlite_engine, database=warehouse_db, batch_size=2))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=one_run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors and len(reports) == 4
    ids = [d["image_id"] for d in warehouse_db["images"].find({}, {"image_id": 1})]
    assert len(ids) == len(set(ids)) == 14
    docs = _doc_transactions(warehouse_db)
    assert all(len(v) == len(set(v)) and v == sorted(v) for v in docs.values())
    assert docs == {k: sorted(v) for k, v in _db_transactions(sqlite_engine).items()}
    assert sum(r.inserted for r in reports) == 8  # each new image inserted by exactly one run
    assert sum(r.transactions_added for r in reports) == 8  # each new tx of an old image pushed once


class _StaleLookup:
    """The collection as another loader sees it in a race: its existence look-up ran before our insert."""

    def __init__(self, collection):  # noqa: ANN001
        self._c = collection

    def find(self, *args, **kwargs):  # noqa: ANN002, ANN003, ANN201
        return iter(())

    def __getattr__(self, name: str):  # noqa: ANN204
        return getattr(self._c, name)


def test_insert_race_falls_back_to_merge(sqlite_engine, warehouse_db, wh_settings):
    h = add_history(sqlite_engine, new_images=2, tx_per_image=1)
    etl.run_incremental(wh_settings, engine=sqlite_engine, database=warehouse_db)
    add_history(sqlite_engine, images=h["images"], tx_per_image=1)
    from cxr.stores.queries import joined_rows
    from cxr.warehouse.documents import documents_from_rows

    with sqlite_engine.connect() as conn:
        docs = list(documents_from_rows(r._mapping for r in conn.execute(joined_rows())))
    counts = etl.write_batch(_StaleLookup(warehouse_db["images"]), docs)
    assert counts == {"inserted": 0, "merged": 2, "transactions_added": 2}
    assert _doc_transactions(warehouse_db) == {k: sorted(v) for k, v in _db_transactions(sqlite_engine).items()}


def test_tls_and_auth(sqlite_engine, secure_warehouse, make_settings):
    from cxr.stores.warehouse import database_from_settings

    settings = make_settings(warehouse_url=secure_warehouse["url"] + "&retryWrites=false",
                             warehouse_tls_ca_file=secure_warehouse["ca"], warehouse_db="cxr_tls")
    database = database_from_settings(settings)
    add_history(sqlite_engine, new_images=3)
    report = etl.run_incremental(settings, engine=sqlite_engine, database=database)
    assert report.inserted == 3 and get_watermark(database) == 6
    assert etl.run_incremental(settings, engine=sqlite_engine, database=database).images == 0
    assert len(stored(database)) == 3


def test_cli_incremental_then_nothing_new(run_cxr, tmp_path, services, warehouse_db):
    from cxr.stores import db

    url = f"sqlite:///{tmp_path / 'cli.db'}"
    engine = db.make_engine(url)
    db.upgrade(engine)
    add_history(engine, new_images=2)
    env = {"CXR_DB_URL": url, "CXR_WAREHOUSE_URL": services["CXR_WAREHOUSE_URL"], "CXR_WAREHOUSE_DB": warehouse_db.name}
    first = run_cxr("warehouse", "--batch-size", "1", env=env)
    assert first.returncode == 0, first.stderr
    assert "documents written: 2 (2 new" in first.stdout and "watermark: None -> 4" in first.stdout
    again = run_cxr("warehouse", env=env)
    assert again.returncode == 0 and "nothing new above the watermark" in again.stdout
    rebuilt = run_cxr("warehouse", "--rebuild", "--no-progress", env=env)  # no backup in the lake yet: the DB alone
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert "rebuild: 2 images, 4 transactions read" in rebuilt.stdout and "watermark: 4 -> 4" in rebuilt.stdout
    bad = run_cxr("warehouse", "--output", "x.ipynb", env=env)
    assert bad.returncode == 3 and bad.stderr.strip() == "cxr: error: --remote-env-file and --output only apply with --via-ssh"
    with engine.connect() as c:
        assert c.execute(select(func.count()).select_from(schema.transaction)).scalar_one() == 4
    engine.dispose()


def test_mode_is_checked(wh_settings):
    from cxr.errors import InputError

    with pytest.raises(InputError, match="unknown mode 'full'"):
        etl.run("full", wh_settings)



def test_refuses_a_db_behind_the_watermark(sqlite_engine, warehouse_db, wh_settings, tmp_path):
    from cxr.errors import IntegrityError
    from cxr.stores import db

    add_history(sqlite_engine, new_images=3)
    etl.run_incremental(wh_settings, engine=sqlite_engine, database=warehouse_db)
    other = db.make_engine(f"sqlite:///{tmp_path / 'other.db'}")  # another DB, or ids reused after a purge
    db.upgrade(other)
    add_history(other, new_images=1)
    with pytest.raises(IntegrityError, match="highest transaction_id 2 is below the warehouse watermark 6"):
        etl.run_incremental(wh_settings, engine=other, database=warehouse_db)
    assert len(stored(warehouse_db)) == 3
    other.dispose()
