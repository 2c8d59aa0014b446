"""Image preparation shared by training and serving (numpy + Pillow, no torch).

The model takes a square ``size`` x ``size`` float32 image in [0, 1]: the original is resized keeping
its aspect ratio so the longer side is ``size`` and placed in the top-left corner (zero padding).
Boxes map back by dividing by ``scale``.
"""

from __future__ import annotations

import numpy as np

from cxr.errors import InputError


def check_image(image: np.ndarray) -> np.ndarray:
    """A 2-D float32 image in [0, 1], or a clear :class:`InputError`."""
    arr = np.asarray(image)
    if arr.ndim == 3 and arr.shape[-1] in (1, 3, 4):
        arr = arr[..., :3].mean(axis=-1) if arr.shape[-1] > 1 else arr[..., 0]
    if arr.ndim != 2:
        raise InputError(f"image must be 2-D (grayscale), got shape {tuple(arr.shape)}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise InputError(f"image has zero size {tuple(arr.shape)}")
    if arr.dtype == np.uint8:
        return arr.astype(np.float32) / 255.0
    if arr.dtype == np.uint16:
        return arr.astype(np.float32) / 65535.0
    arr = arr.astype(np.float32, copy=False)
    if not np.isfinite(arr).all():
        raise InputError("image contains NaN or infinite values")
    return np.clip(arr, 0.0, 1.0)


def letterbox(image: np.ndarray, size: int) -> tuple[np.ndarray, float]:
    """Resize (keep aspect, longer side = ``size``) into a zero ``size`` x ``size`` canvas, top-left."""
    from PIL import Image

    img = check_image(image)
    h, w = img.shape
    scale = size / max(h, w)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    if (nh, nw) != (h, w):
        img = np.asarray(Image.fromarray(img, mode="F").resize((nw, nh), Image.BILINEAR), dtype=np.float32)
    out = np.zeros((size, size), np.float32)
    out[:nh, :nw] = img
    return out, scale
