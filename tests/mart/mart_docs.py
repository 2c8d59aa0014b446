"""Mart test data: warehouse ``images`` documents (the warehouse's schema), their renditions, a counting lake."""

from __future__ import annotations

import hashlib
import io
import threading
from datetime import datetime, timedelta

import numpy as np
from PIL import Image

from cxr.stores.layout import rendition_key
from cxr.stores.watermark import set_watermark

CLASSES = ("Aortic enlargement", "Cardiomegaly", "ILD", "Infiltration", "Nodule/Mass")
T0 = datetime(2024, 3, 1, 8, 0, 0)


def sha_of(i: int) -> str:
    return hashlib.sha256(f"image-{i}".encode()).hexdigest()


def make_doc(image_id: int, *, width: int = 64, height: int = 48, n_tx: int = 1, boxes_per_tx: int = 2,
             day: int = 0, model_version: str = "1", ext: str = "png") -> dict:
    """One image with ``n_tx`` transactions a day apart from ``T0 + day``; ids derived from image_id."""
    sha = sha_of(image_id)
    txs = []
    for t in range(n_tx):
        tid = image_id * 10 + t
        boxes = []
        for b in range(boxes_per_tx):
            cid = (image_id + t + b) % len(CLASSES)
            x0, y0 = 2 + 3 * b, 3 + 2 * b
            boxes.append({
                "pred_bbox_id": tid * 10 + b, "class_id": cid, "class_name": CLASSES[cid],
                "score": round(0.3 + 0.2 * b + 0.05 * t, 3), "box": [x0, y0, x0 + 20.5, y0 + 15.25],
            })
        txs.append({
            "transaction_id": tid, "time": T0 + timedelta(days=day + t, hours=image_id % 5),
            "cs_thr": 0.3, "nms_thr": 0.5, "model_version": model_version, "run_id": f"run-{tid}",
            "mode": "upload", "pred_bbox": boxes,
        })
    return {
        "image_id": image_id, "sha256": sha, "bucket": "lake", "folder": f"images/{sha[:2]}",
        "image_file": f"{sha}.{ext}", "width": width, "height": height, "transactions": txs,
        "created_at": T0 + timedelta(days=day), "updated_at": T0 + timedelta(days=day + n_tx),
    }


def png_bytes(width: int, height: int, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 256, size=(height, width), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr, mode="L").save(buf, format="PNG")
    return buf.getvalue()


def populate(database, lake, docs: list[dict], *, renditions: bool = True) -> None:
    """Insert ``docs`` into ``images``, set the watermark, put one PNG rendition per document."""
    if docs:
        database["images"].insert_many([dict(d) for d in docs])
    tids = [t["transaction_id"] for d in docs for t in d["transactions"]]
    if tids:
        set_watermark(database, max(tids))
    if renditions:
        for d in docs:
            lake.put(rendition_key(d["sha256"]), png_bytes(d["width"], d["height"], d["image_id"]), "image/png")


class CountingLake:
    """Wraps a lake: counts ``get`` calls per key; can fail chosen keys or interrupt after N gets."""

    def __init__(self, lake, *, interrupt_after: int | None = None, flaky: int = 0):
        self.lake = lake
        self.url = lake.url
        self.gets: dict[str, int] = {}
        self.interrupt_after = interrupt_after
        self.flaky = flaky  # the first `flaky` attempts of every key raise ConnectionError
        self._lock = threading.Lock()

    @property
    def total(self) -> int:
        return sum(self.gets.values())

    def get(self, key: str) -> bytes:
        with self._lock:
            n = self.gets.get(key, 0)
            self.gets[key] = n + 1
            if self.interrupt_after is not None and self.total > self.interrupt_after:
                raise KeyboardInterrupt
        if n < self.flaky:
            raise ConnectionError(f"simulated network failure {n + 1} for {key}")
        return self.lake.get(key)
