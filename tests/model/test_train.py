"""A short training smoke run: the loss falls (small images, few steps)."""

import numpy as np
import pytest

pytestmark = pytest.mark.unit


def test_training_smoke_loss_falls_and_exports(tmp_path):
    from cxr.model.datasets import Sample
    from cxr.model.export import write_artifact
    from cxr.model.phantoms import generate_phantom, write_png
    from cxr.model.predict import load_predictor
    from cxr.model.train import train

    samples = []
    for i in range(2):
        p = generate_phantom(i, 128, packed=True)
        samples.append(Sample(write_png(p, tmp_path / f"{i}.png"), p.boxes, p.labels, 128, 128, str(i), p.class_names))
    res = train("smoke", samples=samples, steps=14, threads=1, progress=False)
    losses = [h["loss"] for h in res.history]
    assert len(losses) == 14 and all(np.isfinite(losses))
    assert np.mean(losses[-4:]) < 0.8 * np.mean(losses[:4]), losses
    out = write_artifact(res.model, res.classes, res.arch, tmp_path / "reg" / "smoke" / "0.0.1", name="smoke",
                         version="0.0.1", training=res.info, weights="int8", keep_torch=False)
    det = load_predictor(model_dir=out).predict(np.zeros((64, 64), np.float32), score_thr=0.0, max_det=5)
    assert len(det) == 5


def test_bad_training_arguments():
    from cxr.errors import InputError
    from cxr.model.train import train

    with pytest.raises(InputError, match="recipe"):
        train("nope", steps=1)
    with pytest.raises(InputError, match="multiple of 32"):
        train("smoke", size=100, steps=1)
    with pytest.raises(InputError, match="empty"):
        train("smoke", samples=[], steps=1, progress=False)


def test_cli_train_on_a_coco_dir_registers_an_evaluated_model(tmp_path, run_cxr):
    """`cxr model train` on the mart's layout (annotations/instances.json + images/) end to end."""
    import json

    r = run_cxr("phantoms", "5", str(tmp_path / "coco"), "--size", "64", "--packed")
    assert r.returncode == 0, r.stderr
    r = run_cxr("model", "train", "--recipe", "smoke", "--data", str(tmp_path / "coco"), "--steps", "3",
                "--size", "64", "--threads", "1", "--name", "t", "--version", "0.0.1",
                env={"CXR_MODELS_DIR": str(tmp_path / "reg"), "OMP_WAIT_POLICY": "PASSIVE"}, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "mAP@0.5" in r.stdout
    meta = json.loads((tmp_path / "reg" / "t" / "0.0.1" / "metadata.json").read_text())
    assert meta["onnx"]["weights"] in ("fp16", "int8", "fp32") and "map50" in meta["metrics"]
    assert meta["training"]["synthetic"] is False and meta["metrics"]["n_images"] == 1
    r = run_cxr("model", "train", "--recipe", "smoke", "--data", str(tmp_path / "coco"), "--steps", "1",
                "--name", "t", "--version", "0.0.1", env={"CXR_MODELS_DIR": str(tmp_path / "reg")})
    assert r.returncode == 3 and "already exists" in r.stderr


def test_resnet50_fpn_v2_option_builds_and_matches_the_anchor_count():
    import torch
    from torch import nn

    from cxr.model.anchors import anchors_from_metadata
    from cxr.model.net import RawRetinaNet, build_retinanet, default_arch

    arch = default_arch("resnet50_v2", 64)
    model = build_retinanet(arch, 14)
    assert arch["fpn_channels"] == 256
    assert not any(type(m).__name__ == "FrozenBatchNorm2d" for m in model.modules())
    assert any(isinstance(m, nn.GroupNorm) for m in model.head.modules())
    with torch.no_grad():
        cls, reg = RawRetinaNet(model.eval())(torch.zeros(1, 1, 64, 64))
    n = sum(len(a) for a in anchors_from_metadata({"anchors": {"sizes": arch["anchor_sizes"],
                                                               "aspect_ratios": arch["aspect_ratios"]},
                                                   "input": {"size": 64}}))
    assert cls.shape == (1, n, 14) and reg.shape == (1, n, 4)
