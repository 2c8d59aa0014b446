"""Run-time post-processing in numpy: score threshold, per-class thresholds, top-k, class-wise NMS,
max detections. Torch-free, so the serving path never imports torch; cheap, so thresholds can be
changed after the expensive ``Predictor.infer`` ran once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from cxr.errors import InputError
from cxr.model.box_coding import clip_boxes, decode
from cxr.model.nms import batched_nms

__all__ = ["Detections", "RawOutput", "decode_levels", "postprocess", "filter_detections"]


@dataclass
class Detections:
    """Detections in ORIGINAL image pixels (xyxy), highest score first."""

    boxes: np.ndarray
    scores: np.ndarray
    class_ids: np.ndarray
    class_names: list[str]

    def __post_init__(self) -> None:
        self.boxes = np.asarray(self.boxes, np.float32).reshape(-1, 4)
        self.scores = np.asarray(self.scores, np.float32).reshape(-1)
        self.class_ids = np.asarray(self.class_ids, np.int64).reshape(-1)
        self.class_names = [str(c) for c in self.class_names]

    def __len__(self) -> int:
        return int(self.boxes.shape[0])

    def records(self) -> list[dict]:
        """One dict per box: class_id, class_name, score, x_min, y_min, x_max, y_max (plain Python types)."""
        return [
            {"class_id": int(c), "class_name": n, "score": float(s),
             "x_min": float(b[0]), "y_min": float(b[1]), "x_max": float(b[2]), "y_max": float(b[3])}
            for b, s, c, n in zip(self.boxes, self.scores, self.class_ids, self.class_names)
        ]

    @classmethod
    def empty(cls) -> "Detections":
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64), [])


@dataclass
class RawOutput:
    """What ``Predictor.infer`` returns: the expensive part, computed once per image.

    ``kind="anchors"``: RetinaNet head outputs, ``cls_logits`` (A, C) and ``box_deltas`` (A, 4) over all
    levels concatenated (``level_sizes`` anchors per level), in model-input pixels; ``scale`` maps original
    pixels to input pixels (letterbox, top-left aligned). ``kind="boxes"``: final boxes from a backend that
    decodes itself (Detectron2), already in original pixels.
    """

    kind: str
    orig_size: tuple[int, int]
    cls_logits: np.ndarray | None = None
    box_deltas: np.ndarray | None = None
    level_sizes: tuple[int, ...] = ()
    scale: float = 1.0
    boxes: np.ndarray | None = None
    scores: np.ndarray | None = None
    class_ids: np.ndarray | None = None
    extra: dict = field(default_factory=dict)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float32, copy=False)
    return np.float32(1.0) / (np.float32(1.0) + np.exp(-x))


def _thresholds(n_classes: int, class_names: Sequence[str], score_thr: float,
                class_thr: Mapping[str, float] | None) -> np.ndarray:
    thr = np.full(n_classes, score_thr, np.float32)
    for name, value in (class_thr or {}).items():
        if name not in class_names:
            raise InputError(f"class_thr names unknown class {name!r}; model classes: {', '.join(class_names)}")
        thr[list(class_names).index(name)] = float(value)
    return thr


def _class_mask(n_classes: int, class_names: Sequence[str], classes: set[str] | None) -> np.ndarray:
    if classes is None:
        return np.ones(n_classes, bool)
    unknown = set(classes) - set(class_names)
    if unknown:
        raise InputError(f"unknown class(es) {sorted(unknown)}; model classes: {', '.join(class_names)}")
    return np.array([c in classes for c in class_names], bool)


def decode_levels(
    cls_levels: Sequence[np.ndarray],
    reg_levels: Sequence[np.ndarray],
    anchor_levels: Sequence[np.ndarray],
    image_shape: tuple[float, float],
    *,
    score_thr: float | np.ndarray = 0.05,
    nms_thr: float = 0.5,
    topk: int = 1000,
    max_det: int = 100,
    class_mask: np.ndarray | None = None,
    weights: Sequence[float] = (1.0, 1.0, 1.0, 1.0),
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """torchvision ``RetinaNet.postprocess_detections`` for one image, in numpy.

    Per level: sigmoid, keep scores above the (per-class) threshold, top-k, decode, clip to
    ``image_shape`` (h, w); then class-wise NMS over all levels and the best ``max_det``.
    """
    all_boxes, all_scores, all_labels = [], [], []
    for logits, deltas, anchors in zip(cls_levels, reg_levels, anchor_levels):
        n_classes = logits.shape[-1]
        scores = _sigmoid(logits).reshape(-1)
        thr = np.broadcast_to(np.asarray(score_thr, np.float32), (n_classes,))
        ok = scores > np.tile(thr, len(scores) // n_classes)
        if class_mask is not None:
            ok &= np.tile(class_mask, len(scores) // n_classes)
        idx = np.flatnonzero(ok)
        if len(idx) == 0:
            continue
        s = scores[idx]
        if len(idx) > topk:
            part = np.argpartition(-s, topk - 1)[:topk]
            idx, s = idx[part], s[part]
        order = np.argsort(-s, kind="stable")
        idx, s = idx[order], s[order]
        anchor_idx, labels = idx // n_classes, idx % n_classes
        boxes = clip_boxes(decode(deltas[anchor_idx], anchors[anchor_idx], weights), image_shape[0], image_shape[1])
        all_boxes.append(boxes)
        all_scores.append(s)
        all_labels.append(labels)
    if not all_boxes:
        return np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64)
    boxes, scores, labels = np.concatenate(all_boxes), np.concatenate(all_scores), np.concatenate(all_labels)
    keep = batched_nms(boxes, scores, labels, nms_thr)[:max_det]
    return boxes[keep], scores[keep], labels[keep].astype(np.int64)


def filter_detections(boxes, scores, class_ids, class_names: Sequence[str], *, score_thr: float = 0.5,
                      nms_thr: float = 0.5, class_thr: Mapping[str, float] | None = None,
                      classes: set[str] | None = None, topk: int = 1000, max_det: int = 100) -> Detections:
    """The same run-time knobs on already-decoded boxes (Detectron2 backend, or re-filtering)."""
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    scores = np.asarray(scores, np.float32).reshape(-1)
    class_ids = np.asarray(class_ids, np.int64).reshape(-1)
    if len(boxes) != len(scores) or len(scores) != len(class_ids):
        raise InputError("boxes, scores and classes differ in length")
    if len(class_ids) and (class_ids.min() < 0 or class_ids.max() >= len(class_names)):
        raise InputError(f"class id {int(class_ids.max())} outside the model's {len(class_names)} classes")
    thr = _thresholds(len(class_names), class_names, score_thr, class_thr)
    mask = _class_mask(len(class_names), class_names, classes)
    ok = (scores > thr[class_ids]) & mask[class_ids] if len(class_ids) else np.zeros(0, bool)
    idx = np.flatnonzero(ok)
    idx = idx[np.argsort(-scores[idx], kind="stable")][:topk]
    keep = idx[batched_nms(boxes[idx], scores[idx], class_ids[idx], nms_thr)][:max_det]
    return Detections(boxes[keep], scores[keep], class_ids[keep], [class_names[i] for i in class_ids[keep]])


def postprocess(raw: RawOutput, anchor_levels: Sequence[np.ndarray] | None, class_names: Sequence[str], *,
                score_thr: float = 0.5, nms_thr: float = 0.5, class_thr: Mapping[str, float] | None = None,
                classes: set[str] | None = None, topk: int = 1000, max_det: int = 100,
                weights: Sequence[float] = (1.0, 1.0, 1.0, 1.0)) -> Detections:
    """Raw model output -> :class:`Detections` in original image pixels."""
    if not 0.0 <= score_thr <= 1.0 or not 0.0 <= nms_thr <= 1.0:
        raise InputError(f"thresholds must be within [0, 1], got score_thr={score_thr}, nms_thr={nms_thr}")
    if raw.kind == "boxes":
        return filter_detections(raw.boxes, raw.scores, raw.class_ids, class_names, score_thr=score_thr,
                                 nms_thr=nms_thr, class_thr=class_thr, classes=classes, topk=topk, max_det=max_det)
    n_classes = raw.cls_logits.shape[-1]
    if n_classes != len(class_names):
        raise InputError(f"model outputs {n_classes} classes but its metadata lists {len(class_names)}")
    thr = _thresholds(n_classes, class_names, score_thr, class_thr)
    mask = _class_mask(n_classes, class_names, classes)
    splits = np.cumsum(raw.level_sizes)[:-1]
    h, w = raw.orig_size
    valid = (h * raw.scale, w * raw.scale)  # the letterboxed image occupies the top-left corner
    boxes, scores, labels = decode_levels(
        np.split(raw.cls_logits, splits), np.split(raw.box_deltas, splits), anchor_levels, valid,
        score_thr=thr, nms_thr=nms_thr, topk=topk, max_det=max_det, class_mask=mask, weights=weights)
    boxes = boxes / np.float32(raw.scale)
    boxes = clip_boxes(boxes, h, w)
    return Detections(boxes, scores, labels, [class_names[i] for i in labels])
