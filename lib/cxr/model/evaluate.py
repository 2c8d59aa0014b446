"""Evaluation: COCO mAP@0.5 and mAP@[.5:.95] through pycocotools, AP per class, sensitivity at
1 false positive per image. Torch-free (runs any :class:`~cxr.model.predict.Predictor`).
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from cxr.errors import InputError
from cxr.model.datasets import Sample, load_image
from cxr.model.nms import box_iou
from cxr.model.phantoms import generate_phantom
from cxr.model.postprocess import Detections
from cxr.model.predict import Predictor

#: held-out evaluation phantoms use seeds from here (training uses small seeds)
EVAL_SEED_BASE = 10_000_000


@dataclass
class EvalItem:
    gt_boxes: np.ndarray
    gt_labels: np.ndarray
    det: Detections
    width: int
    height: int


def _coco_eval(items: Sequence[EvalItem], classes: Sequence[str]) -> Any:
    # pycocotools is the `train` extra: the demo environment evaluates nothing
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    gt = {"images": [], "annotations": [], "categories": [{"id": i + 1, "name": c} for i, c in enumerate(classes)]}
    dets = []
    aid = 1
    for i, it in enumerate(items, start=1):
        gt["images"].append({"id": i, "width": it.width, "height": it.height})
        for b, lab in zip(it.gt_boxes, it.gt_labels):
            w, h = float(b[2] - b[0]), float(b[3] - b[1])
            gt["annotations"].append({"id": aid, "image_id": i, "category_id": int(lab) + 1, "iscrowd": 0,
                                      "bbox": [float(b[0]), float(b[1]), w, h], "area": w * h})
            aid += 1
        for b, s, c in zip(it.det.boxes, it.det.scores, it.det.class_ids):
            dets.append({"image_id": i, "category_id": int(c) + 1, "score": float(s),
                         "bbox": [float(b[0]), float(b[1]), float(b[2] - b[0]), float(b[3] - b[1])]})
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = gt
        coco_gt.createIndex()
        coco_dt = coco_gt.loadRes(dets) if dets else COCO()
        if not dets:
            return None
        ev = COCOeval(coco_gt, coco_dt, "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev


def sensitivity_at_fp(items: Sequence[EvalItem], fp_per_image: float = 1.0, iou_thr: float = 0.5,
                      class_id: int | None = None) -> float:
    """FROC point: fraction of ground-truth boxes found when the score threshold allows ``fp_per_image`` FPs/image."""
    scores, is_tp = [], []
    n_gt = 0
    for it in items:
        gmask = np.ones(len(it.gt_labels), bool) if class_id is None else it.gt_labels == class_id
        dmask = np.ones(len(it.det), bool) if class_id is None else it.det.class_ids == class_id
        n_gt += int(gmask.sum())
        d_boxes, d_scores, d_cls = it.det.boxes[dmask], it.det.scores[dmask], it.det.class_ids[dmask]
        g_boxes, g_cls = it.gt_boxes[gmask], it.gt_labels[gmask]
        used = np.zeros(len(g_boxes), bool)
        iou = box_iou(d_boxes, g_boxes) if len(d_boxes) and len(g_boxes) else np.zeros((len(d_boxes), len(g_boxes)))
        for j in np.argsort(-d_scores, kind="stable"):
            ok = (~used) & (g_cls == d_cls[j]) & (iou[j] >= iou_thr) if len(g_boxes) else np.zeros(0, bool)
            if ok.any():
                used[np.flatnonzero(ok)[np.argmax(iou[j][ok])]] = True
                is_tp.append(True)
            else:
                is_tp.append(False)
            scores.append(d_scores[j])
    if n_gt == 0:
        return float("nan")
    order = np.argsort(-np.asarray(scores), kind="stable")
    tp = np.cumsum(np.asarray(is_tp, bool)[order])
    fp = np.cumsum(~np.asarray(is_tp, bool)[order])
    allowed = fp <= fp_per_image * len(items)
    return float(tp[allowed].max() / n_gt) if allowed.any() else 0.0


def evaluate_items(items: Sequence[EvalItem], classes: Sequence[str], dataset: str = "") -> dict:
    """Metrics dict: map50, map, ap50_per_class, sens_at_1fp, sens_at_1fp_per_class, n_images, n_boxes."""
    ev = _coco_eval(items, classes)
    out: dict = {"dataset": dataset, "n_images": len(items), "n_boxes": int(sum(len(i.gt_labels) for i in items))}
    if ev is None:
        out.update(map50=0.0, map=0.0, ap50_per_class={c: 0.0 for c in classes})
    else:
        out["map"] = float(ev.stats[0])
        out["map50"] = float(ev.stats[1])
        prec = ev.eval["precision"]  # [T, R, K, A, M]
        per = {}
        for k, c in enumerate(classes):
            p = prec[0, :, k, 0, -1]
            per[c] = float(p[p > -1].mean()) if (p > -1).any() else float("nan")
        out["ap50_per_class"] = per
    out["sens_at_1fp"] = sensitivity_at_fp(items)
    out["sens_at_1fp_per_class"] = {c: sensitivity_at_fp(items, class_id=k) for k, c in enumerate(classes)}
    return out


def evaluate_phantoms(predictor: Predictor, n: int = 200, size: int = 512, *, seed_base: int = EVAL_SEED_BASE,
                      score_thr: float = 0.05, progress: bool | None = None) -> dict:
    """mAP etc. on ``n`` held-out phantoms (seeds never used in training)."""
    items = []
    for i in tqdm(range(n), desc="eval phantoms", disable=(not progress) if progress is not None else None):
        p = generate_phantom(seed_base + i, size, predictor.classes)
        det = predictor.predict(p.as_float(), score_thr=score_thr, max_det=100)
        items.append(EvalItem(p.boxes, p.labels, det, p.width, p.height))
    return evaluate_items(items, predictor.classes,
                          dataset=f"{n} held-out synthetic phantoms ({size} px, seeds {seed_base}..{seed_base + n - 1})")


def evaluate_samples(predictor: Predictor, samples: Iterable[Sample], *, score_thr: float = 0.05, progress: bool | None = None,
                     dataset: str = "") -> dict:
    """Metrics on dataset samples (COCO/VinDr); sample classes must be the model's."""
    samples = list(samples)
    items = []
    for s in tqdm(samples, desc="eval", disable=(not progress) if progress is not None else None):
        if s.classes and tuple(s.classes) != tuple(predictor.classes):
            raise InputError(f"dataset classes {list(s.classes)} do not match the model's {list(predictor.classes)}")
        det = predictor.predict(load_image(s.image_path), score_thr=score_thr, max_det=100)
        items.append(EvalItem(s.boxes, s.labels, det, s.width, s.height))
    return evaluate_items(items, predictor.classes, dataset=dataset or f"{len(samples)} images")


def metrics_table(metrics: dict) -> str:
    """A small markdown table of the metrics."""
    rows = ["| metric | value |", "|---|---|",
            f"| mAP@0.5 | {metrics.get('map50', float('nan')):.3f} |",
            f"| mAP@[.5:.95] | {metrics.get('map', float('nan')):.3f} |",
            f"| sensitivity @ 1 FP/image | {metrics.get('sens_at_1fp', float('nan')):.3f} |"]
    for c, v in (metrics.get("ap50_per_class") or {}).items():
        rows.append(f"| AP@0.5 {c} | {v:.3f} |")
    return "\n".join(rows)
