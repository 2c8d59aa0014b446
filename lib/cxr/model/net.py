"""The torchvision RetinaNet used here (imports torch; training, export and the ``torch`` backend only).

Default: a light ResNet18 + FPN (128 channels) from scratch with BatchNorm (not FrozenBatchNorm),
grayscale input, ``min_size = max_size =`` the training size and anchors whose smallest level fits
~12 px nodules. Option: ResNet50-FPN v2 (GroupNorm head, as torchvision's ``retinanet_resnet50_fpn_v2``).
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from typing import Any

import torch
from torch import nn
from torchvision.models import resnet18, resnet50
from torchvision.models.detection import RetinaNet
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.models.detection.retinanet import RetinaNetHead
from torchvision.ops.feature_pyramid_network import LastLevelP6P7

from cxr.errors import InputError
from cxr.model.anchors import anchor_sizes
from cxr.model.metadata import Arch

BACKBONES = ("resnet18", "resnet50_v2")


def default_arch(backbone: str = "resnet18", size: int = 256, smallest_anchor: int = 12) -> dict[str, Any]:
    """The architecture description stored in metadata (enough to rebuild the network)."""
    if backbone not in BACKBONES:
        raise InputError(f"unknown backbone {backbone!r}; use one of {', '.join(BACKBONES)}")
    return {
        "backbone": backbone,
        "fpn_channels": 128 if backbone == "resnet18" else 256,
        "input_size": int(size),
        "in_channels": 1,
        "mean": 0.5,
        "std": 0.25,
        "head_convs": 4,
        "anchor_sizes": [list(s) for s in anchor_sizes(smallest_anchor)],
        "aspect_ratios": [[0.5, 1.0, 2.0]] * 5,
    }


def build_retinanet(arch: Arch | Mapping[str, Any], num_classes: int) -> RetinaNet:
    """A fresh (untrained) torchvision RetinaNet for ``arch`` (see :func:`default_arch`)."""
    if not isinstance(arch, Arch):
        if arch.get("backbone") not in BACKBONES:
            raise InputError(f"unknown backbone {arch.get('backbone')!r}; use one of {', '.join(BACKBONES)}")
        arch = Arch.model_validate(arch)
    ch = int(arch.fpn_channels)
    if arch.backbone == "resnet18":
        body = resnet18(weights=None, norm_layer=nn.BatchNorm2d)
        in_list = [128, 256, 512]
        head_norm = None
    else:  # resnet50_v2 (Arch admits no other)
        body = resnet50(weights=None, norm_layer=nn.BatchNorm2d)
        in_list = [512, 1024, 2048]
        head_norm = partial(nn.GroupNorm, 32)
    body.conv1 = nn.Conv2d(int(arch.in_channels), 64, kernel_size=7, stride=2, padding=3, bias=False)
    backbone = BackboneWithFPN(body, {"layer2": "0", "layer3": "1", "layer4": "2"}, in_list, ch,
                               extra_blocks=LastLevelP6P7(ch, ch))
    anchor_gen = AnchorGenerator(tuple(tuple(s) for s in arch.anchor_sizes),
                                 tuple(tuple(a) for a in arch.aspect_ratios))
    head = RetinaNetHead(ch, anchor_gen.num_anchors_per_location()[0], num_classes, norm_layer=head_norm)
    n = int(arch.head_convs)
    head.classification_head.conv = head.classification_head.conv[:n]
    head.regression_head.conv = head.regression_head.conv[:n]
    size = int(arch.input_size)
    mean, std = float(arch.mean), float(arch.std)
    return RetinaNet(backbone, num_classes, anchor_generator=anchor_gen, head=head, min_size=size, max_size=size,
                     image_mean=[mean], image_std=[std], score_thresh=0.05, detections_per_img=100)


class RawRetinaNet(nn.Module):
    """(B, 1, S, S) images in [0, 1] -> raw head outputs: cls_logits (B, A, C), bbox_deltas (B, A, 4).

    Levels are concatenated in anchor order (P3..P7), exactly as ``RetinaNetHead`` returns them.
    This is what gets exported to ONNX; decoding and NMS happen in numpy.
    """

    def __init__(self, model: RetinaNet):
        super().__init__()
        self.backbone = model.backbone
        self.head = model.head
        self.register_buffer("mean", torch.tensor(model.transform.image_mean).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(model.transform.image_std).view(1, -1, 1, 1))

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = (images - self.mean) / self.std
        feats = list(self.backbone(x).values())
        out = self.head(feats)
        return out["cls_logits"], out["bbox_regression"]
