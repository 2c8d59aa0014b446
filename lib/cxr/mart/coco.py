"""Warehouse documents -> a COCO detection dataset, its train/val split and its dataset card (pure).

One COCO image per selected transaction (``id`` = ``transaction_id``, stable across exports);
with ``latest`` (the default) that is one per warehouse image. Every entry also carries the
warehouse's names -- ``cxr_image_id`` (the warehouse's and the DB's ``image_id``: in a COCO file
``image_id`` means only what COCO means by it, the COCO image an annotation belongs to),
``sha256``, ``transaction_id``, ``model_version``, ``run_id``, ``cs_thr``, ``nms_thr`` -- and its
``split``. One annotation per kept box (``id`` = ``pred_bbox_id``), ``bbox`` = ``[x, y, w, h]`` in
pixels, clipped to the image. Category ids are ``class_id + 1`` (COCO's ids start at 1); each
category also carries its ``class_id``.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from cxr.errors import InputError, IntegrityError
from cxr.mart.filters import MartFilters, selected, to_utc_naive
from cxr.stores.layout import rendition_key

SPLITS = ("train", "val")
_SPLIT_SALT = b"cxr-mart-split\x00"


@dataclass(frozen=True)
class ImageFile:
    """One file to fetch from the lake into ``images/``."""

    key: str  # lake key of the PNG rendition
    file_name: str  # name under OUT_DIR/images/
    width: int
    height: int
    sha256: str  # of the stored upload (names the rendition), not of the PNG


@dataclass(frozen=True)
class MartBuild:
    coco: dict
    files: tuple[ImageFile, ...]
    dropped_boxes: int  # boxes with no area left after clipping to the image


def file_name_for(doc: Mapping) -> str:
    return f"{int(doc['image_id'])}_{doc['sha256'][:12]}.png"


def split_of(sha256: str, val_fraction: float) -> str:
    """``'val'`` for about ``val_fraction`` of images, decided by the image's hash alone.

    The same image lands in the same split in every export, whatever else is selected, so a
    later, larger export never moves a validation image into training.
    """
    h = int.from_bytes(hashlib.sha256(_SPLIT_SALT + sha256.encode()).digest()[:8], "big")
    return "val" if h / 2**64 < val_fraction else "train"


def class_table(docs: Iterable[Mapping], model_classes: Sequence[str] | None = None) -> dict[int, str]:
    """``class_id -> class_name``: the model's classes, checked against every box in ``docs``.

    Without ``model_classes`` the table is what the boxes name. A box whose name disagrees
    with its id (or with the model) is an :class:`IntegrityError`.
    """
    table: dict[int, str] = dict(enumerate(model_classes)) if model_classes is not None else {}
    fixed = model_classes is not None
    for doc in docs:
        for tx in doc.get("transactions") or ():
            for b in tx.get("pred_bbox") or ():
                cid, name = int(b["class_id"]), b["class_name"]
                known = table.get(cid)
                if known is None and not fixed:
                    table[cid] = name
                elif known != name:
                    src = "the model's classes" if fixed else "other boxes"
                    raise IntegrityError(
                        f"image {doc.get('image_id')}: box {b.get('pred_bbox_id')} has class_id {cid} = {name!r}, "
                        f"but {src} say {known!r}")
    return dict(sorted(table.items()))


def categories(table: Mapping[int, str], classes: Sequence[str] | None = None) -> list[dict]:
    """COCO categories for ``table``, only ``classes`` when given (unknown names are an InputError)."""
    if classes:
        unknown = sorted(set(classes) - set(table.values()))
        if unknown:
            raise InputError(f"unknown class {', '.join(map(repr, unknown))}; known: {', '.join(table.values())}")
    keep = set(classes) if classes else None
    return [
        {"id": cid + 1, "name": name, "supercategory": "abnormality", "class_id": cid}
        for cid, name in table.items() if keep is None or name in keep
    ]


def coco_bbox(box: Sequence[float], width: int, height: int) -> list[float] | None:
    """``[x_min, y_min, x_max, y_max]`` -> ``[x, y, w, h]`` clipped to the image; None when empty."""
    x0, y0, x1, y1 = (float(v) for v in box)
    x0, x1 = min(max(x0, 0.0), width), min(max(x1, 0.0), width)
    y0, y1 = min(max(y0, 0.0), height), min(max(y1, 0.0), height)
    w, h = x1 - x0, y1 - y0
    if w <= 0 or h <= 0:
        return None
    return [round(x0, 3), round(y0, 3), round(w, 3), round(h, 3)]


def _coco_time(t: object) -> str | None:
    t = to_utc_naive(t)  # type: ignore[arg-type]
    return t.strftime("%Y-%m-%d %H:%M:%S") if t else None


def build_coco(docs: Iterable[Mapping], f: MartFilters, table: Mapping[int, str], *,
               created: datetime, info: Mapping[str, object] | None = None) -> MartBuild:
    """The COCO dict (all splits) and the files to fetch for ``docs`` under the filters ``f``."""
    cats = categories(table, f.classes)
    cat_of = {c["class_id"]: c["id"] for c in cats}
    images: list[dict] = []
    annotations: list[dict] = []
    files: dict[str, ImageFile] = {}
    dropped = 0
    for doc, tx, boxes in selected(docs, f):
        width, height, sha = int(doc["width"]), int(doc["height"]), str(doc["sha256"])
        name = file_name_for(doc)
        files.setdefault(name, ImageFile(rendition_key(sha), name, width, height, sha))
        coco_id = int(tx["transaction_id"])
        images.append({
            "id": coco_id, "file_name": name, "width": width, "height": height,
            "date_captured": _coco_time(tx.get("time")), "license": 0,
            "split": split_of(sha, f.val_fraction),
            "cxr_image_id": int(doc["image_id"]), "sha256": sha, "transaction_id": coco_id,
            "model_version": tx.get("model_version"), "run_id": tx.get("run_id"),
            "cs_thr": tx.get("cs_thr"), "nms_thr": tx.get("nms_thr"),
        })
        for b in boxes:
            bbox = coco_bbox(b["box"], width, height)
            if bbox is None:
                dropped += 1
                continue
            annotations.append({
                "id": int(b["pred_bbox_id"]), "image_id": coco_id, "category_id": cat_of[int(b["class_id"])],
                "bbox": bbox, "area": round(bbox[2] * bbox[3], 3), "iscrowd": 0,
                "score": float(b["score"]),
            })
    _check_unique(images, "transaction_id")
    _check_unique(annotations, "pred_bbox_id")
    coco = {
        "info": {
            "description": "cxr data mart: model predictions exported from the warehouse (pseudo-labels, not ground truth)",
            "version": "1.0", "year": created.year, "contributor": "cxr",
            "date_created": created.isoformat(timespec="seconds"), "filters": f.describe(), **(info or {}),
        },
        "licenses": [],
        "images": images,
        "annotations": annotations,
        "categories": cats,
    }
    return MartBuild(coco, tuple(files.values()), dropped)


def _check_unique(rows: list[dict], what: str) -> None:
    counts = Counter(r["id"] for r in rows)
    dup = [k for k, n in counts.items() if n > 1]
    if dup:
        raise IntegrityError(f"the warehouse repeats {what} {dup[0]} ({len(dup)} repeated); rebuild the warehouse")


def subset(coco: Mapping, split: str) -> dict:
    """The COCO dict restricted to one split (``'train'`` or ``'val'``)."""
    images = [im for im in coco["images"] if im["split"] == split]
    ids = {im["id"] for im in images}
    return {**coco, "images": images, "annotations": [a for a in coco["annotations"] if a["image_id"] in ids]}


def class_counts(coco: Mapping) -> dict[str, dict[str, int]]:
    """``{class name: {"train": n, "val": n, "total": n}}`` boxes, every category listed."""
    split_of_image = {im["id"]: im["split"] for im in coco["images"]}
    name = {c["id"]: c["name"] for c in coco["categories"]}
    out = {n: {"train": 0, "val": 0, "total": 0} for n in name.values()}
    for a in coco["annotations"]:
        row = out[name[a["category_id"]]]
        row[split_of_image[a["image_id"]]] += 1
        row["total"] += 1
    return out


def dataset_card(coco: Mapping, *, source: Mapping[str, object], dropped_boxes: int = 0) -> str:
    """The dataset card (README.md): what, from where, which filters, how many, when."""
    info = coco["info"]
    images = coco["images"]
    per_split = Counter(im["split"] for im in images)
    files = {im["file_name"] for im in images}
    times = sorted(im["date_captured"] for im in images if im["date_captured"])
    versions = sorted({str(im["model_version"]) for im in images})
    counts = class_counts(coco)
    split_ann = {s: sum(c[s] for c in counts.values()) for s in SPLITS}
    lines = [
        "# cxr data mart export (COCO)",
        "",
        "Boxes are **predictions of the cxr detector** stored in the warehouse, not radiologist labels.",
        "The demo model is trained on synthetic phantoms: this data set is for pipeline work and",
        "retraining experiments, **not for clinical use**.",
        "",
        f"- Created: {info['date_created']} (UTC)",
        f"- Source warehouse: {source.get('warehouse', '?')} (database `{source.get('database', '?')}`)",
        f"- Source warehouse watermark (highest transaction_id loaded): {source.get('watermark') if source.get('watermark') is not None else 'unknown'}",
        f"- Source lake: {source.get('lake', '?')} (PNG renditions)",
        f"- Date range of the exported transactions: {times[0] + ' to ' + times[-1] if times else 'none'} (UTC)",
        f"- Model versions: {', '.join(versions) if versions else 'none'}",
        "",
        "## Filters",
        "",
        "| filter | value |",
        "|---|---|",
        *(f"| {k} | {'any' if v is None else (', '.join(v) if isinstance(v, list) else v)} |" for k, v in info["filters"].items()),
        "",
        "## Counts",
        "",
        "| | train | val | total |",
        "|---|---:|---:|---:|",
        f"| COCO images (transactions) | {per_split['train']} | {per_split['val']} | {len(images)} |",
        f"| image files | | | {len(files)} |",
        f"| annotations | {split_ann['train']} | {split_ann['val']} | {len(coco['annotations'])} |",
        "",
        "## Annotations per class",
        "",
        "| category id | class | train | val | total |",
        "|---:|---|---:|---:|---:|",
        *(f"| {c['id']} | {c['name']} | {counts[c['name']]['train']} | {counts[c['name']]['val']} | {counts[c['name']]['total']} |"
          for c in coco["categories"]),
        "",
        "## Layout",
        "",
        "- `images/<cxr_image_id>_<sha256[:12]>.png`: 8-bit PNG renditions (DICOMs were de-identified at ingest).",
        "- `annotations/instances.json`: every split (each image has `split`); `instances_train.json`,",
        "  `instances_val.json`: one split each. `bbox` is `[x, y, w, h]` in pixels; category id = class_id + 1.",
        "- The split is by image (a hash of its sha256), the same in every export.",
    ]
    if dropped_boxes:
        lines += ["", f"{dropped_boxes} box(es) with no area inside the image were left out."]
    return "\n".join(lines) + "\n"
