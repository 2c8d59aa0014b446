"""Box coding in numpy, matching torchvision's ``BoxCoder`` (weights (1, 1, 1, 1) for RetinaNet)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

#: torchvision's clamp on dw/dh before exp()
BBOX_XFORM_CLIP = math.log(1000.0 / 16)


def decode(deltas: np.ndarray, anchors: np.ndarray, weights: Sequence[float] = (1.0, 1.0, 1.0, 1.0),
           clip: float = BBOX_XFORM_CLIP) -> np.ndarray:
    """(N, 4) deltas (dx, dy, dw, dh) on (N, 4) xyxy anchors -> (N, 4) xyxy boxes."""
    deltas = deltas.astype(np.float32, copy=False)
    anchors = anchors.astype(np.float32, copy=False)
    wx, wy, ww, wh = (np.float32(w) for w in weights)
    widths = anchors[:, 2] - anchors[:, 0]
    heights = anchors[:, 3] - anchors[:, 1]
    ctr_x = anchors[:, 0] + np.float32(0.5) * widths
    ctr_y = anchors[:, 1] + np.float32(0.5) * heights
    dx, dy = deltas[:, 0] / wx, deltas[:, 1] / wy
    dw = np.minimum(deltas[:, 2] / ww, np.float32(clip))
    dh = np.minimum(deltas[:, 3] / wh, np.float32(clip))
    pcx, pcy = dx * widths + ctr_x, dy * heights + ctr_y
    pw, ph = np.exp(dw) * widths, np.exp(dh) * heights
    half_w, half_h = np.float32(0.5) * pw, np.float32(0.5) * ph
    return np.stack([pcx - half_w, pcy - half_h, pcx + half_w, pcy + half_h], axis=1).astype(np.float32)


def encode(boxes: np.ndarray, anchors: np.ndarray, weights: Sequence[float] = (1.0, 1.0, 1.0, 1.0)) -> np.ndarray:
    """Inverse of :func:`decode` (used in tests and for reference)."""
    wx, wy, ww, wh = weights
    aw, ah = anchors[:, 2] - anchors[:, 0], anchors[:, 3] - anchors[:, 1]
    acx, acy = anchors[:, 0] + 0.5 * aw, anchors[:, 1] + 0.5 * ah
    bw, bh = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    bcx, bcy = boxes[:, 0] + 0.5 * bw, boxes[:, 1] + 0.5 * bh
    return np.stack([wx * (bcx - acx) / aw, wy * (bcy - acy) / ah, ww * np.log(bw / aw), wh * np.log(bh / ah)], 1).astype(np.float32)


def clip_boxes(boxes: np.ndarray, height: float, width: float) -> np.ndarray:
    """Clip xyxy boxes to the image."""
    out = boxes.copy()
    out[:, 0::2] = np.clip(out[:, 0::2], 0, width)
    out[:, 1::2] = np.clip(out[:, 1::2], 0, height)
    return out
