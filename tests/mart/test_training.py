"""Closing the loop: the detector's training code accepts the mart's export (tiny run + eval)."""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta

import numpy as np
import pytest

from cxr.stores.layout import rendition_key
from cxr.mart.export import export_mart
from cxr.model.classes import SEED_CLASSES
from cxr.model.phantoms import generate_phantom, png_bytes

pytestmark = pytest.mark.integration


def phantom_documents(n: int, size: int) -> tuple[list[dict], dict[str, bytes], list]:
    """Warehouse documents whose predictions are the phantoms' true boxes, plus their renditions."""
    docs, objects, phantoms = [], {}, []
    for i in range(n):
        p = generate_phantom(1000 + i, size=size, packed=True)
        sha = hashlib.sha256(p.image.tobytes()).hexdigest()
        objects[rendition_key(sha)] = png_bytes(p)
        boxes = [{"pred_bbox_id": (i + 1) * 100 + j, "class_id": int(lab), "class_name": SEED_CLASSES[int(lab)],
                  "score": 0.95, "box": [float(v) for v in box]} for j, (box, lab) in enumerate(zip(p.boxes, p.labels))]
        tx = {"transaction_id": i + 1, "time": datetime(2024, 4, 1) + timedelta(hours=i), "cs_thr": 0.5, "nms_thr": 0.5,
              "model_version": "1", "run_id": "r1", "mode": "upload", "pred_bbox": boxes}
        docs.append({"image_id": i + 1, "sha256": sha, "bucket": "lake", "folder": f"images/{sha[:2]}",
                     "image_file": f"{sha}.png", "width": p.width, "height": p.height, "transactions": [tx],
                     "created_at": tx["time"], "updated_at": tx["time"]})
        phantoms.append(p)
    return docs, objects, phantoms


def test_training_and_eval_run_on_the_export(warehouse_db, local_lake, tmp_path):
    from cxr.model.datasets import read_coco
    from cxr.model.train import train_and_register

    docs, objects, phantoms = phantom_documents(12, 128)
    warehouse_db["images"].insert_many(docs)
    for key, data in objects.items():
        local_lake.put(key, data)
    out = tmp_path / "mart"
    res = export_mart(out, database=warehouse_db, lake=local_lake, classes=SEED_CLASSES, progress=False)
    assert res.images == 12 and res.annotations == sum(len(p.boxes) for p in phantoms) > 0

    samples = read_coco(out)
    assert [s.classes for s in samples[:1]] == [SEED_CLASSES] and len(samples) == 12
    for s, p in zip(samples, phantoms):
        assert (s.width, s.height) == (p.width, p.height) and s.image_path.is_file()
        np.testing.assert_allclose(s.boxes, np.clip(p.boxes, 0, p.width), atol=0.01)
        np.testing.assert_array_equal(s.labels, p.labels)

    report = train_and_register("smoke", data=out, models_dir=tmp_path / "models", name="mart-loop", version="1",
                                weights="fp32", steps=2, progress=False, log=lambda _msg: None)
    model_dir = tmp_path / "models" / "mart-loop" / "1"
    assert (model_dir / "metadata.json").is_file()
    metrics = report.get("metrics") or report
    assert "map50" in metrics and 0.0 <= metrics["map50"] <= 1.0
    assert "held-out 10%" in str(metrics.get("dataset", ""))
