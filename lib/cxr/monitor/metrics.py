"""How good the model is in use (pure): its stored predictions against radiologists' reviewed labels.

For every reviewed transaction in the warehouse, the ground truth is the final labels of that
transaction's newest review (accepted, corrected and added boxes; "no finding": none), and the
detections are the boxes the detector stored. Per model version and ISO week (of the prediction):

- precision and recall at IoU 0.5 (greedy, highest score first, same class), from the TP/FP/FN
  counts, at the thresholds the transactions were stored with;
- mAP@0.5 through pycocotools (COCOeval, IoU 0.5, all areas, 100 detections), NaN when
  pycocotools is not installed (it comes with the ``app`` and ``train`` extras);
- the counts: images, predicted boxes, reviewed boxes.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta

import numpy as np
import pandas as pd

from cxr.model.nms import box_iou

IOU = 0.5
PERFORMANCE_COLUMNS = ("model_version", "week", "images", "predicted_boxes", "reviewed_boxes", "tp", "fp", "fn",
                       "precision", "recall", "map50")


@dataclass(frozen=True)
class Reviewed:
    """One reviewed transaction: what the model stored and what the radiologist kept."""

    model_version: str
    time: datetime
    width: int
    height: int
    pred: tuple[tuple[int, float, tuple[float, ...]], ...]  # (class_id, score, xyxy)
    truth: tuple[tuple[int, tuple[float, ...]], ...]  # (class_id, xyxy)


def week_of(t: datetime) -> date:
    """The Monday of ``t``'s ISO week."""
    d = t.date() if isinstance(t, datetime) else t
    return d - timedelta(days=d.weekday())


def _newest(reviews: Sequence[Mapping]) -> Mapping:
    return max(reviews, key=lambda r: (r.get("time") or datetime.min, r.get("review_id") or 0))


def reviewed_transactions(docs: Iterable[Mapping]) -> list[Reviewed]:
    """Every transaction with a review, paired with its newest review's final labels."""
    out = []
    for doc in docs:
        for tx in doc.get("transactions") or ():
            reviews = tx.get("reviews") or ()
            if not reviews or tx.get("time") is None:
                continue
            rv = _newest(reviews)
            truth = tuple((int(b["class_id"]), tuple(b["box"])) for b in rv.get("boxes") or ()
                          if b.get("action") in ("accept", "correct", "add") and b.get("box") is not None)
            pred = tuple((int(b["class_id"]), float(b["score"]), tuple(b["box"])) for b in tx.get("pred_bbox") or ())
            out.append(Reviewed(str(tx.get("model_version")), tx["time"], int(doc["width"]), int(doc["height"]),
                                pred, truth))
    return out


def match_counts(item: Reviewed, iou: float = IOU) -> tuple[int, int, int]:
    """(TP, FP, FN) of one image: detections by score, each matched to the best unmatched same-class truth."""
    if not item.pred:
        return 0, 0, len(item.truth)
    if not item.truth:
        return 0, len(item.pred), 0
    pred = sorted(item.pred, key=lambda p: -p[1])
    pb = np.asarray([p[2] for p in pred], np.float32)
    tb = np.asarray([t[1] for t in item.truth], np.float32)
    ious = box_iou(pb, tb)
    used = np.zeros(len(item.truth), bool)
    tp = 0
    for i, (cid, _score, _box) in enumerate(pred):
        ok = (~used) & (np.asarray([t[0] for t in item.truth]) == cid) & (ious[i] >= iou)
        if ok.any():
            used[np.flatnonzero(ok)[np.argmax(ious[i][ok])]] = True
            tp += 1
    return tp, len(pred) - tp, len(item.truth) - tp


def map50(items: Sequence[Reviewed]) -> float:
    """COCO mAP@0.5 of the detections against the reviewed labels (pycocotools); NaN without it or without truth."""
    try:  # pycocotools: the app and train extras; without it the monitor still gives precision and recall
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval
    except ImportError:
        return float("nan")
    classes = sorted({c for it in items for c, _ in it.truth} | {c for it in items for c, _, _ in it.pred})
    gt: dict = {"images": [], "annotations": [], "categories": [{"id": c + 1} for c in classes]}
    dets = []
    for i, it in enumerate(items, start=1):
        gt["images"].append({"id": i, "width": it.width, "height": it.height})
        for c, b in it.truth:
            w, h = b[2] - b[0], b[3] - b[1]
            gt["annotations"].append({"id": len(gt["annotations"]) + 1, "image_id": i, "category_id": c + 1,
                                      "bbox": [b[0], b[1], w, h], "area": w * h, "iscrowd": 0})
        dets += [{"image_id": i, "category_id": c + 1, "score": s, "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]]}
                 for c, s, b in it.pred]
    if not gt["annotations"] or not dets:
        return float("nan") if not gt["annotations"] else 0.0
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = gt
        coco_gt.createIndex()
        ev = COCOeval(coco_gt, coco_gt.loadRes(dets), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return float(ev.stats[1])


def performance_table(items: Sequence[Reviewed]) -> pd.DataFrame:
    """One row per (model_version, week): counts, precision, recall, mAP@0.5 (see the module docstring)."""
    groups: dict[tuple[str, date], list[Reviewed]] = {}
    for it in items:
        groups.setdefault((it.model_version, week_of(it.time)), []).append(it)
    rows = []
    for (version, week), group in sorted(groups.items()):
        tp, fp, fn = (sum(c) for c in zip(*(match_counts(it) for it in group)))
        rows.append({"model_version": version, "week": week, "images": len(group),
                     "predicted_boxes": sum(len(it.pred) for it in group),
                     "reviewed_boxes": sum(len(it.truth) for it in group), "tp": tp, "fp": fp, "fn": fn,
                     "precision": tp / (tp + fp) if tp + fp else float("nan"),
                     "recall": tp / (tp + fn) if tp + fn else float("nan"), "map50": map50(group)})
    return pd.DataFrame(rows, columns=list(PERFORMANCE_COLUMNS))
