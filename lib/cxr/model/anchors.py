"""Anchors in numpy, exactly as torchvision's ``AnchorGenerator`` makes them (no torch needed).

Per pyramid level: base anchors for every (aspect ratio, scale) pair, centred on 0 and rounded,
shifted over the feature grid (row-major, anchors innermost). Stored in the model metadata as
sizes/aspect ratios/strides, regenerated for the model's fixed input size.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from cxr.model.metadata import AnchorSpec, ModelMetadata

#: default RetinaNet levels P3..P7 and their strides for a ResNet + FPN backbone
DEFAULT_STRIDES: tuple[int, ...] = (8, 16, 32, 64, 128)


def anchor_sizes(smallest: int = 12, levels: int = 5, scales_per_octave: int = 3) -> tuple[tuple[int, ...], ...]:
    """RetinaNet's size ladder (x, x*2^(1/3), x*2^(2/3)) per level, starting at ``smallest`` px."""
    return tuple(
        tuple(int(smallest * 2**lvl * 2 ** (k / scales_per_octave)) for k in range(scales_per_octave))
        for lvl in range(levels)
    )


def feature_sizes(input_size: int, n_levels: int = 5) -> list[tuple[int, int]]:
    """Feature map sizes of P3..P7 for a square ``input_size`` (conv stride 2, padding 1 => ceil halving)."""
    n = input_size
    sizes = []
    for level in range(2 + n_levels + 1):
        n = math.ceil(n / 2)
        if level >= 2:  # after conv1 (s2), maxpool (s4), layer2 (s8) ...
            sizes.append((n, n))
    return sizes[:n_levels]


def base_anchors(sizes: Sequence[float], aspect_ratios: Sequence[float]) -> np.ndarray:
    """Zero-centred anchors (len(ratios)*len(sizes), 4), ratio-major like torchvision (float32, rounded)."""
    scales = np.asarray(sizes, np.float32)
    ratios = np.asarray(aspect_ratios, np.float32)
    h_ratios = np.sqrt(ratios)
    w_ratios = np.float32(1.0) / h_ratios
    ws = (w_ratios[:, None] * scales[None, :]).reshape(-1)
    hs = (h_ratios[:, None] * scales[None, :]).reshape(-1)
    return np.round(np.stack([-ws, -hs, ws, hs], axis=1) / 2).astype(np.float32)


def grid_anchors(
    image_size: tuple[int, int],
    feature_sizes_: Sequence[tuple[int, int]],
    sizes: Sequence[Sequence[float]],
    aspect_ratios: Sequence[Sequence[float]],
) -> list[np.ndarray]:
    """Anchors per level, each (H*W*A, 4) xyxy in input pixels."""
    out = []
    for (fh, fw), sz, ar in zip(feature_sizes_, sizes, aspect_ratios):
        stride_h, stride_w = image_size[0] // fh, image_size[1] // fw
        base = base_anchors(sz, ar)
        sx = np.arange(fw, dtype=np.int32).astype(np.float32) * stride_w
        sy = np.arange(fh, dtype=np.int32).astype(np.float32) * stride_h
        yy, xx = np.meshgrid(sy, sx, indexing="ij")
        xx, yy = xx.reshape(-1), yy.reshape(-1)
        shifts = np.stack([xx, yy, xx, yy], axis=1)
        out.append((shifts[:, None, :] + base[None, :, :]).reshape(-1, 4).astype(np.float32))
    return out


def anchors_from_metadata(meta: ModelMetadata | Mapping[str, Any]) -> list[np.ndarray]:
    """Regenerate the per-level anchors recorded in a model's ``metadata.json`` (typed, or its raw JSON)."""
    if not isinstance(meta, ModelMetadata):
        a, size = AnchorSpec.model_validate(meta["anchors"]), int(meta["input"]["size"])
    else:
        a, size = meta.anchors, int(meta.input.size)
    fs = [tuple(x) for x in a.feature_sizes or feature_sizes(size, len(a.sizes))]
    return grid_anchors((size, size), fs, a.sizes, a.aspect_ratios)
