"""Image preparation shared by training and serving (numpy + Pillow, no torch).

The model takes a square ``size`` x ``size`` float32 image in [0, 1]: the original is resized keeping
its aspect ratio so the longer side is ``size`` (bilinear without antialiasing, as torchvision's
transform) and placed in the top-left corner (zero padding).
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


def _axis(n_out: int, n_in: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    src = (np.arange(n_out, dtype=np.float64) + 0.5) * (n_in / n_out) - 0.5
    src = np.maximum(src, 0.0)
    i0 = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
    i1 = np.minimum(i0 + 1, n_in - 1)
    return i0, i1, (src - i0).astype(np.float32)


def resize_bilinear(img: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """Bilinear resize without antialiasing, exactly as torch's ``F.interpolate(mode="bilinear",
    align_corners=False)`` that torchvision's detection transform uses (so serving sees what training saw)."""
    y0, y1, ly = _axis(out_h, img.shape[0])
    x0, x1, lx = _axis(out_w, img.shape[1])
    rows0, rows1 = img[y0], img[y1]
    top = rows0[:, x0] * (1 - lx) + rows0[:, x1] * lx
    bottom = rows1[:, x0] * (1 - lx) + rows1[:, x1] * lx
    return (top * (1 - ly)[:, None] + bottom * ly[:, None]).astype(np.float32)


def letterbox(image: np.ndarray, size: int, *, checked: bool = False) -> tuple[np.ndarray, float]:
    """Resize (keep aspect, longer side = ``size``) into a zero ``size`` x ``size`` canvas, top-left.

    ``checked``: ``image`` already came from :func:`check_image` (skips a second pass over it).
    """
    img = image if checked else check_image(image)
    h, w = img.shape
    scale = size / max(h, w)
    nh, nw = min(size, max(1, round(h * scale))), min(size, max(1, round(w * scale)))
    if (nh, nw) != (h, w):
        img = resize_bilinear(img, nh, nw)
    out = np.zeros((size, size), np.float32)
    out[:nh, :nw] = img
    return out, scale
