"""Warehouse fixtures: a small history written straight into the DB with SQLAlchemy Core.

``add_history(engine, images, tx_per_image, boxes_per_tx, ...)`` inserts images, transactions
and boxes with explicit ids (so tests know them); every third transaction has no boxes, so the
LEFT JOIN's NULL box rows are always exercised.
"""

from __future__ import annotations

import importlib.util
import sys
import weakref
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, insert, select

from cxr.stores import schema

T0 = datetime(2024, 1, 1, 8, 0, 0, 123456)  # microseconds on purpose: BSON keeps milliseconds
CLASSES = ("Aortic enlargement", "Cardiomegaly", "ILD", "Infiltration", "Nodule/Mass")


def _sha(i: int) -> str:
    return f"{i * 2654435761 % 2**64:064x}"


#: Highest ids handed out per engine: like MySQL's AUTO_INCREMENT, ids are never reused after a purge.
_issued: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _next_id(conn, column) -> int:  # noqa: ANN001
    used = int(conn.execute(select(func.coalesce(func.max(column), 0))).scalar_one())
    return max(used, _issued.get(conn.engine, {}).get(column.table.name, 0)) + 1


def add_history(engine, *, images=(), new_images: int = 0, tx_per_image: int = 2, boxes_per_tx: int = 2,  # noqa: ANN001
                start: datetime = T0, step: timedelta = timedelta(days=1)) -> dict:
    """Add ``tx_per_image`` transactions to each of ``images`` (existing ids) and to ``new_images`` new ones.

    Transaction ``k`` of the call is dated ``start + k*step``. Returns {"images": [...], "transactions": [...]}.
    """
    with engine.begin() as conn:
        iid = _next_id(conn, schema.image.c.image_id)
        tid = _next_id(conn, schema.transaction.c.transaction_id)
        bid = _next_id(conn, schema.pred_bounding_box.c.pred_bbox_id)
        fresh = list(range(iid, iid + new_images))
        if fresh:
            conn.execute(insert(schema.image), [
                {"image_id": i, "bucket": "cxr-lake", "folder": f"images/{_sha(i)[:2]}", "image_file": f"{_sha(i)}.png",
                 "sha256": _sha(i), "width": 512 + i, "height": 480, "source_format": "png",
                 "original_name": f"case{i}.png", "created_at": T0 - timedelta(days=30) + timedelta(seconds=i)}
                for i in fresh])
        txs, boxes, k = [], [], 0
        for image_id in list(images) + fresh:
            for _ in range(tx_per_image):
                txs.append({"transaction_id": tid, "image_id": image_id, "time": start + k * step,
                            "cs_thr": 0.5, "nms_thr": 0.45, "model_version": "cxr-demo/1", "run_id": f"run-{k % 3}"})
                n = 0 if tid % 3 == 0 else boxes_per_tx
                for j in range(n):
                    c = (tid + j) % len(CLASSES)
                    boxes.append({"pred_bbox_id": bid, "transaction_id": tid, "pred_class": CLASSES[c], "class_id": c,
                                  "pred_cs": 0.5 + j / 10, "x_min": 10.0 * j, "y_min": 20.5, "x_max": 100.25 + j,
                                  "y_max": 200.0})
                    bid += 1
                tid += 1
                k += 1
        if txs:
            conn.execute(insert(schema.transaction), txs)
        if boxes:
            conn.execute(insert(schema.pred_bounding_box), boxes)
        _issued[conn.engine] = {"image": iid + new_images - 1, "transaction": tid - 1, "pred_bounding_box": bid - 1}
    return {"images": list(images) + fresh, "transactions": [t["transaction_id"] for t in txs]}


def stored(database) -> list[dict]:  # noqa: ANN001
    """Every document of the images collection, without ``_id``, by image_id."""
    return list(database["images"].find({}, {"_id": 0}).sort("image_id", 1))


@pytest.fixture
def wh_settings(make_settings, services):
    """Settings pointing at the SecantusDB server (the tests pass engine/database explicitly)."""
    return make_settings(warehouse_url=services["CXR_WAREHOUSE_URL"])


def _foundation_conftest():  # noqa: ANN202
    """The foundation tests' conftest (its TLS + SCRAM SecantusDB fixture), loaded under its own name."""
    folder = Path(__file__).resolve().parents[1] / "foundation"
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))  # its `foundation_helpers` (the test CA)
    spec = importlib.util.spec_from_file_location("foundation_conftest_for_warehouse", folder / "conftest.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


#: SecantusDB over TLS (a CA made at run time) with SCRAM-SHA-256 required: {url, ca, user, password, port}.
secure_warehouse = _foundation_conftest().secure_warehouse
