"""Static int8 quantization: ``cxr model quantize`` writes a new registry version that loads, says what it
is, and finds what the source finds; the shipped 1.1.0 is that version of 1.0.0."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from cxr.model.nms import box_iou
from cxr.model.phantoms import generate_phantom
from cxr.model.predict import OnnxPredictor, clear_cache, load_predictor
from cxr.model.quantize import quantize_model
from cxr.model.registry import read_metadata

pytestmark = pytest.mark.unit
MODELS = Path(__file__).resolve().parents[2] / "models"


def _same_findings(a, b, iou: float = 0.8) -> bool:
    """Same classes, and every box of ``a`` overlaps one of ``b``'s of its class (order aside)."""
    if sorted(a.class_names) != sorted(b.class_names):
        return False
    for box, name in zip(a.boxes, a.class_names):
        others = np.asarray([bb for bb, n in zip(b.boxes, b.class_names) if n == name])
        if box_iou(box[None], others).max() <= iou:
            return False
    return True


def test_quantize_writes_a_new_version_beside_the_source(tmp_path):
    registry = tmp_path / "models"
    shutil.copytree(MODELS / "cxr-demo" / "1.0.0", registry / "cxr-demo" / "1.0.0")
    out = quantize_model(registry / "cxr-demo" / "1.0.0", "9.9.9", calib_n=8,
                         evaluate=lambda path, meta: {"map50": 0.5, "map": 0.25, "dataset": "stub for the card"})
    meta = read_metadata(out)
    assert (meta.version, meta.onnx.weights, meta.torch) == ("9.9.9", "int8-static", None)
    assert meta.training["quantization"]["from_version"] == "1.0.0" and meta.metrics["map50"] == 0.5
    assert meta.drift_reference is None  # the source's scores are not this model's (the CLI computes its own)
    card = (out / "MODEL_CARD.md").read_text()
    assert card.startswith("# Model card: cxr-demo 9.9.9") and "NOT FOR CLINICAL USE" in card
    assert "statically quantized" in card and "mAP@0.5: 0.500" in card
    assert (registry / "cxr-demo" / "1.0.0" / "model.onnx").read_bytes() == (MODELS / "cxr-demo/1.0.0/model.onnx").read_bytes()
    with pytest.raises(Exception, match="exists"):
        quantize_model(registry / "cxr-demo" / "1.0.0", "9.9.9", calib_n=8)


def test_the_shipped_static_int8_version_finds_what_its_source_finds(make_settings):
    clear_cache()
    settings = make_settings(models_dir=MODELS)
    q = load_predictor(settings, model_dir=MODELS / "cxr-demo" / "1.1.0")  # verifies size and sha256
    src = load_predictor(settings, model_dir=MODELS / "cxr-demo" / "1.0.0")
    assert isinstance(q, OnnxPredictor) and q.metadata.onnx.weights == "int8-static"
    assert q.metadata.metrics["map50"] >= src.metadata.metrics["map50"] - 0.01
    ref, src_ref = q.metadata.drift_reference, src.metadata.drift_reference  # the monitor compares with its own
    assert ref is not None and src_ref is not None and ref.features["score"] != src_ref.features["score"]
    agree = [_same_findings(q.predict(p.as_float()), src.predict(p.as_float()))
             for p in (generate_phantom(10_000_000 + i, 512, q.classes) for i in range(6))]
    assert sum(agree) >= 5, agree
