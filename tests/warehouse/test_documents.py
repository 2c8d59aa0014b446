"""The pure transform: JOINED_COLUMNS rows -> one document per image, and merges (no servers)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pandas as pd
import pytest

from cxr.stores.queries import JOINED_COLUMNS
from cxr.warehouse.documents import (
    DOCUMENT_FIELDS,
    bson_time,
    document_from_rows,
    documents_from_rows,
    merge_documents,
    merge_updates,
)
from cxr.warehouse.etl import backup_rows, merged_documents

pytestmark = pytest.mark.unit

CREATED = datetime(2024, 1, 1, 7, 0, 0, 999999)


def row(image_id: int, tid: int, bid: int | None, *, when: datetime | None = None, cls: str = "ILD") -> dict:
    r = {"image_id": image_id, "sha256": f"{image_id:064x}", "bucket": "lake", "folder": "images/00",
         "image_file": f"{image_id:064x}.png", "width": 640, "height": 480, "source_format": "png",
         "created_at": CREATED, "transaction_id": tid, "time": when or datetime(2024, 2, 1) + timedelta(hours=tid),
         "cs_thr": 0.5, "nms_thr": 0.45, "model_version": "cxr-demo/1", "run_id": "r1",
         "pred_bbox_id": bid, "pred_class": cls if bid else None, "class_id": 2 if bid else None,
         "pred_cs": 0.75 if bid else None, "x_min": 1.0 if bid else None, "y_min": 2.0 if bid else None,
         "x_max": 3.5 if bid else None, "y_max": 4.5 if bid else None,
         "study_key": None, "patient_key": None, "source": "ingest", "skip_reason": None,
         "user_id": None, "intensity_mean": None, "intensity_std": None}  # migration 0004
    assert set(r) == set(JOINED_COLUMNS)
    return r


def test_document_shape_and_seed_names():
    doc = document_from_rows([row(7, 11, 3), row(7, 11, 2), row(7, 12, None)])
    assert list(doc) == list(DOCUMENT_FIELDS)
    assert {k: doc[k] for k in ("image_id", "bucket", "folder", "width", "height")} == {
        "image_id": 7, "bucket": "lake", "folder": "images/00", "width": 640, "height": 480}
    t11, t12 = doc["transactions"]
    assert t11["mode"] == "Object Detection" and t11["cs_thr"] == 0.5 and t11["nms_thr"] == 0.45
    assert [b["pred_bbox_id"] for b in t11["pred_bbox"]] == [2, 3]  # sorted by box id
    assert t11["pred_bbox"][0] == {"pred_bbox_id": 2, "class_id": 2, "class_name": "ILD", "score": 0.75,
                                   "box": [1.0, 2.0, 3.5, 4.5]}
    assert t12["pred_bbox"] == []  # a transaction without boxes (LEFT JOIN NULL row) is kept
    assert doc["created_at"] == datetime(2024, 1, 1, 7, 0, 0, 999000)  # BSON millisecond precision
    assert doc["updated_at"] == t12["time"]


def test_times_become_naive_utc_milliseconds():
    aware = datetime(2024, 3, 1, 12, 0, 0, 123456, tzinfo=timezone(timedelta(hours=2)))
    assert bson_time(aware) == datetime(2024, 3, 1, 10, 0, 0, 123000)
    assert bson_time(pd.Timestamp("2024-03-01 10:00:00.123999")) == datetime(2024, 3, 1, 10, 0, 0, 123000)
    assert bson_time(pd.NaT) is None and bson_time(None) is None
    with pytest.raises(TypeError):
        bson_time("2024-03-01")


def test_rows_grouped_by_image_stream_one_document_each():
    rows = [row(1, 1, 1), row(1, 2, None), row(2, 3, 2), row(3, 4, 3), row(3, 4, 4)]
    docs = list(documents_from_rows(iter(rows)))
    assert [d["image_id"] for d in docs] == [1, 2, 3]
    assert [[t["transaction_id"] for t in d["transactions"]] for d in docs] == [[1, 2], [3], [4]]
    assert len(docs[2]["transactions"][0]["pred_bbox"]) == 2


def test_pandas_rows_equal_db_rows():
    """The backup's pandas frame (Int64 with <NA>, Timestamps) gives the very same documents."""
    rows = [row(1, 1, 1), row(1, 2, None), row(2, 3, 2)]
    frame = pd.DataFrame(rows, columns=list(JOINED_COLUMNS))
    for c in ("pred_bbox_id", "class_id", "transaction_id", "image_id"):
        frame[c] = frame[c].astype("Int64")
    assert list(documents_from_rows(backup_rows(frame))) == list(documents_from_rows(rows))


def test_merge_is_idempotent_and_order_free():
    a = document_from_rows([row(5, 1, 1), row(5, 3, 2)])
    b = document_from_rows([row(5, 2, None), row(5, 3, 2)])
    ab = merge_documents(a, b)
    assert [t["transaction_id"] for t in ab["transactions"]] == [1, 2, 3]
    assert merge_documents(ab, b) == ab
    assert merge_documents(b, a) == ab
    assert ab == document_from_rows([row(5, 1, 1), row(5, 2, None), row(5, 3, 2)])
    with pytest.raises(ValueError):
        merge_documents(a, document_from_rows([row(6, 9, None)]))


def test_merge_updates_push_only_missing_transactions():
    doc = document_from_rows([row(5, 1, 1), row(5, 2, None)])
    pairs = merge_updates(doc)
    assert [f for f, _ in pairs] == [{"image_id": 5, "transactions.transaction_id": {"$ne": 1}},
                                     {"image_id": 5, "transactions.transaction_id": {"$ne": 2}}]
    update = pairs[0][1]
    assert update["$push"]["transactions"]["$each"] == [doc["transactions"][0]]
    assert update["$push"]["transactions"]["$sort"] == {"transaction_id": 1}
    assert update["$max"] == {"updated_at": doc["transactions"][0]["time"]}
    assert not any(k.startswith("$where") or k == "$function" for _, u in pairs for k in u)


def test_backup_and_db_rows_merge_without_duplicates():
    backup = [row(1, 1, 1), row(1, 2, None), row(2, 3, 2)]  # image 2 purged from the DB
    db = [row(1, 2, None), row(1, 5, 7), row(4, 6, 8)]  # tx 2 in both (backed up, not purged yet)
    docs = list(merged_documents(iter(backup), iter(db)))
    assert [d["image_id"] for d in docs] == [1, 2, 4]
    assert [t["transaction_id"] for t in docs[0]["transactions"]] == [1, 2, 5]
    assert docs == list(documents_from_rows(sorted(backup + db[1:], key=lambda r: (r["image_id"], r["transaction_id"]))))

