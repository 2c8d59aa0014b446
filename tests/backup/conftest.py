"""Backup fixtures: ONE SparkSession for the whole test session, and a small history in the DB.

Rows are inserted with SQLAlchemy Core straight into the schema (no ingest code).
"""

from __future__ import annotations

from datetime import datetime

import pytest
from sqlalchemy import insert, select

from cxr.stores import schema
from cxr.stores.queries import JOINED_COLUMNS, joined_rows

#: Transactions before this are history; the run's --before.
CUTOFF = datetime(2024, 3, 1)


@pytest.fixture(scope="session")
def spark():
    """local[2], no UI, 2 shuffle partitions, the JDBC jars: started once (~10-50 s, ~700 MB)."""
    from cxr.backup.spark import spark_session
    from cxr.config import load_settings

    session = spark_session(load_settings(), master="local[2]")
    session.sparkContext.setLogLevel("ERROR")
    session.conf.set("spark.sql.shuffle.partitions", "2")
    yield session
    session.stop()


def _image(i: int) -> dict:
    sha = f"{i:064x}"
    return {"image_id": i, "bucket": "lake", "folder": f"images/{sha[:2]}", "image_file": f"{sha}.png", "sha256": sha,
            "width": 512, "height": 480, "source_format": "png", "original_name": f"case{i}.png",
            "created_at": datetime(2024, 1, 1, 8, 0, 0, 250000)}


def _tx(tid: int, iid: int, when: datetime) -> dict:
    return {"transaction_id": tid, "image_id": iid, "time": when, "cs_thr": 0.5, "nms_thr": 0.25,
            "model_version": "cxr-demo/3", "run_id": f"run-{tid % 2}"}


def _box(bid: int, tid: int, k: int) -> dict:
    return {"pred_bbox_id": bid, "transaction_id": tid, "pred_class": ["Cardiomegaly", "ILD", "Nodule/Mass"][k % 3],
            "class_id": k % 3, "pred_cs": 0.5 + k / 8, "x_min": 10.5 * k, "y_min": 20.25, "x_max": 100.5 + k, "y_max": 200.0}


@pytest.fixture
def history(db_engine):
    """A small history around CUTOFF; returns a dict describing it.

    image 1: tx 1 (Jan, 2 boxes), tx 2 (Feb, NO boxes), tx 3 (June, 1 box: stays)
    image 2: tx 4 (Jan, 3 boxes)                   -> the image leaves the DB with the purge
    image 3: tx 5 (June, no boxes)                 -> untouched
    image 4: tx 6 (Dec 2023, 1 box)                -> another year/month partition
    """
    e = db_engine
    txs = [_tx(1, 1, datetime(2024, 1, 10, 9, 30, 15, 123000)), _tx(2, 1, datetime(2024, 2, 3, 12, 0, 0)),
           _tx(3, 1, datetime(2024, 6, 1, 0, 0, 1)), _tx(4, 2, datetime(2024, 1, 20, 23, 59, 59)),
           _tx(5, 3, datetime(2024, 6, 2)), _tx(6, 4, datetime(2023, 12, 31, 23, 0, 0))]
    boxes = [_box(1, 1, 0), _box(2, 1, 1), _box(3, 3, 2), _box(4, 4, 0), _box(5, 4, 1), _box(6, 4, 2), _box(7, 6, 1)]
    with e.begin() as c:
        c.execute(insert(schema.image), [_image(i) for i in (1, 2, 3, 4)])
        c.execute(insert(schema.transaction), txs)
        c.execute(insert(schema.pred_bounding_box), boxes)
    return {"engine": e, "old_tx": {1, 2, 4, 6}, "new_tx": {3, 5}, "empty_tx": 2, "old_boxes": {1, 2, 4, 5, 6, 7},
            "gone_images": {2, 4}, "kept_images": {1, 3}}


def db_rows(engine, before=None) -> list[tuple]:  # noqa: ANN001
    """The reference: the DB's own LEFT JOIN rows (SQLAlchemy Core) as comparable tuples."""
    with engine.connect() as c:
        return [tuple(_plain(v) for v in r) for r in c.execute(joined_rows(before=before))]


def frame_rows(frame) -> list[tuple]:  # noqa: ANN001 - pandas DataFrame from read_backup
    return [tuple(_plain(v) for v in r) for r in frame[list(JOINED_COLUMNS)].itertuples(index=False, name=None)]


def _plain(v):  # noqa: ANN001, ANN202
    import pandas as pd

    if v is None or (not isinstance(v, str) and pd.isna(v)):
        return None
    if isinstance(v, pd.Timestamp):
        return v.to_pydatetime()
    if hasattr(v, "item"):  # numpy scalar
        return v.item()
    return v


def table_counts(engine) -> dict[str, set]:  # noqa: ANN001
    with engine.connect() as c:
        return {
            "image": {r[0] for r in c.execute(select(schema.image.c.image_id))},
            "transaction": {r[0] for r in c.execute(select(schema.transaction.c.transaction_id))},
            "pred_bounding_box": {r[0] for r in c.execute(select(schema.pred_bounding_box.c.pred_bbox_id))},
        }


@pytest.fixture
def bk():
    """Helpers for the tests: cutoff, db_rows(engine, before), frame_rows(df), table_counts(engine)."""
    from types import SimpleNamespace

    return SimpleNamespace(CUTOFF=CUTOFF, db_rows=db_rows, frame_rows=frame_rows, table_counts=table_counts)
