"""Fixtures for the detector tests: a tiny, untrained RetinaNet exported to a registry folder."""

from __future__ import annotations

import pytest

TINY_SIZE = 64


@pytest.fixture(scope="session")
def tiny_arch():
    from cxr.model.net import default_arch

    arch = default_arch("resnet18", TINY_SIZE, smallest_anchor=8)
    arch["fpn_channels"] = 32
    arch["head_convs"] = 1
    return arch


@pytest.fixture(scope="session")
def tiny_model(tiny_arch):
    """(torch RetinaNet in eval mode, classes); weights random but fixed, cls bias raised so boxes appear."""
    import torch

    from cxr.model.classes import SEED_CLASSES
    from cxr.model.net import build_retinanet

    torch.set_num_threads(1)  # a shared 2-core machine: one thread wastes no CPU spinning
    torch.manual_seed(0)
    model = build_retinanet(tiny_arch, len(SEED_CLASSES)).eval()
    with torch.no_grad():  # untrained RetinaNet scores ~0.01; lift them so post-processing has work to do
        model.head.classification_head.cls_logits.bias.fill_(0.0)
    return model, SEED_CLASSES


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, tiny_model, tiny_arch):
    """A registry-shaped folder: models/cxr-tiny/0.1.0/{model.onnx (fp32), model.pt, metadata.json, MODEL_CARD.md}."""
    from cxr.model.export import write_artifact

    model, classes = tiny_model
    root = tmp_path_factory.mktemp("registry")
    out = write_artifact(model, classes, tiny_arch, root / "cxr-tiny" / "0.1.0", name="cxr-tiny", version="0.1.0",
                         training={"recipe": "test", "data": "none (untrained)", "synthetic": True}, weights="fp32")
    return out


@pytest.fixture
def model_copy(tiny_model_dir, tmp_path):
    """A writable copy of the tiny model folder (for corrupting it)."""
    import shutil

    dst = tmp_path / "cxr-tiny" / "0.1.0"
    shutil.copytree(tiny_model_dir, dst)
    return dst
