"""Warehouse documents -> a COCO detection dataset, its train/val split and its dataset card (pure).

One COCO image per selected transaction (``id`` = ``transaction_id``, stable across exports);
with ``latest`` (the default) that is one per warehouse image. Every entry also carries the
warehouse's names -- ``cxr_image_id`` (the warehouse's and the DB's ``image_id``: in a COCO file
``image_id`` means only what COCO means by it, the COCO image an annotation belongs to),
``sha256``, ``transaction_id``, ``model_version``, ``run_id``, ``cs_thr``, ``nms_thr`` -- its
``split``, and ``reviewed`` (with ``review_id``, ``reviewer_role``, ``verdict`` when true).
One annotation per kept box, ``bbox`` = ``[x, y, w, h]`` in pixels, clipped to the image, with
its ``provenance``: ``predicted`` (``id`` = ``pred_bbox_id``, with its ``score``) or ``reviewed``
(``id`` = :data:`REVIEWED_ID_BASE` + ``review_box_id``, with ``review_box_id``, ``action`` and the
judged ``pred_bbox_id``). Which ones: ``labels`` (see :mod:`cxr.mart.filters`). Category ids are
``class_id + 1`` (COCO's ids start at 1); each category also carries its ``class_id``.

The train/val split is by patient (the keyed ``patient_key``) where the image has one, else by
image: no patient is in both splits, at any ``val_fraction``.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from cxr.errors import InputError, IntegrityError
from cxr.mart.filters import MartFilters, selected, selected_reviews, to_utc_naive
from cxr.stores.layout import rendition_key

SPLITS = ("train", "val")
_SPLIT_SALT = b"cxr-mart-split\x00"
_PATIENT_SALT = b"cxr-mart-split-patient\x00"
#: Reviewed annotations' ids: this plus ``review_box_id`` (predicted ones are ``pred_bbox_id``, far below).
REVIEWED_ID_BASE = 10**12


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


def split_of(sha256: str, val_fraction: float, patient_key: str | None = None) -> str:
    """``'val'`` for about ``val_fraction`` of patients (of images without a patient key), decided by
    a hash of the patient key (else of the image's sha256) alone.

    Every image of a patient lands in the same split; the same image in the same split in every
    export, whatever else is selected, and a larger ``val_fraction`` only moves images from train
    to val, so no patient is ever in both splits and a later export never moves a validation
    image into training.
    """
    seed = _PATIENT_SALT + patient_key.encode() if patient_key else _SPLIT_SALT + sha256.encode()
    h = int.from_bytes(hashlib.sha256(seed).digest()[:8], "big")
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
            reviewed = [b for rv in tx.get("reviews") or () for b in rv.get("boxes") or () if b.get("class_id") is not None]
            for b in list(tx.get("pred_bbox") or ()) + reviewed:
                cid, name = int(b["class_id"]), b["class_name"]
                known = table.get(cid)
                if known is None and not fixed:
                    table[cid] = name
                elif known != name:
                    src = "the model's classes" if fixed else "other boxes"
                    what = (f"box {b['pred_bbox_id']}" if "review_box_id" not in b else
                            f"reviewed box {b['review_box_id']}")
                    raise IntegrityError(
                        f"image {doc.get('image_id')}: {what} has class_id {cid} = {name!r}, "
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


def _image_entry(doc: Mapping, tx: Mapping, f: MartFilters) -> dict:
    sha, coco_id = str(doc["sha256"]), int(tx["transaction_id"])
    return {
        "id": coco_id, "file_name": file_name_for(doc), "width": int(doc["width"]), "height": int(doc["height"]),
        "date_captured": _coco_time(tx.get("time")), "license": 0,
        "split": split_of(sha, f.val_fraction, doc.get("patient_key")),
        "cxr_image_id": int(doc["image_id"]), "sha256": sha, "transaction_id": coco_id,
        "model_version": tx.get("model_version"), "run_id": tx.get("run_id"),
        "cs_thr": tx.get("cs_thr"), "nms_thr": tx.get("nms_thr"), "reviewed": False,
    }


def _annotation(b: Mapping, coco_id: int, cat_of: Mapping[int, int], width: int, height: int) -> dict | None:
    bbox = coco_bbox(b["box"], width, height)
    if bbox is None:
        return None
    ann = {"image_id": coco_id, "category_id": cat_of[int(b["class_id"])], "bbox": bbox,
           "area": round(bbox[2] * bbox[3], 3), "iscrowd": 0}
    if "review_box_id" in b:
        return {"id": REVIEWED_ID_BASE + int(b["review_box_id"]), **ann, "provenance": "reviewed",
                "review_box_id": int(b["review_box_id"]), "action": b.get("action"), "pred_bbox_id": b.get("pred_bbox_id")}
    return {"id": int(b["pred_bbox_id"]), **ann, "score": float(b["score"]), "provenance": "predicted"}


def build_coco(docs: Iterable[Mapping], f: MartFilters, table: Mapping[int, str], *,
               created: datetime, info: Mapping[str, object] | None = None, labels: str = "predicted") -> MartBuild:
    """The COCO dict (all splits) and the files to fetch for ``docs`` under the filters ``f``, with
    ``labels`` ``predicted``, ``reviewed`` or ``both`` (resolved by the caller; see the module docstring)."""
    docs = list(docs)
    cats = categories(table, f.classes)
    cat_of = {c["class_id"]: c["id"] for c in cats if c["class_id"] is not None}
    images: dict[int, dict] = {}
    annotations: list[dict] = []
    files: dict[str, ImageFile] = {}
    dropped = 0
    picks: list[tuple[Mapping, Mapping, Mapping | None, list]] = []
    if labels in ("predicted", "both"):
        picks += [(doc, tx, None, boxes) for doc, tx, boxes in selected(docs, f)]
    if labels in ("reviewed", "both"):
        picks += [(doc, tx, rv, boxes) for doc, tx, rv, boxes in selected_reviews(docs, f)]
    for doc, tx, rv, boxes in picks:
        width, height, sha = int(doc["width"]), int(doc["height"]), str(doc["sha256"])
        name = file_name_for(doc)
        files.setdefault(name, ImageFile(rendition_key(sha), name, width, height, sha))
        coco_id = int(tx["transaction_id"])
        entry = images.get(coco_id)
        if entry is None or labels == "predicted":
            if entry is not None:  # the same transaction twice: the warehouse repeats it
                raise IntegrityError(f"the warehouse repeats transaction_id {coco_id}; rebuild the warehouse")
            entry = images[coco_id] = _image_entry(doc, tx, f)
        if rv is not None:
            entry.update(reviewed=True, review_id=rv.get("review_id"), reviewer_role=rv.get("reviewer_role"),
                         reviewer_id=rv.get("reviewer_id"), verdict=rv.get("verdict"))
        for b in boxes:
            ann = _annotation(b, coco_id, cat_of, width, height)
            if ann is None:
                dropped += 1
            else:
                annotations.append(ann)
    image_list = sorted(images.values(), key=lambda im: (im["cxr_image_id"], im["id"]))
    _check_unique(annotations, "box id")
    what = {"predicted": "model predictions exported from the warehouse (pseudo-labels, not ground truth)",
            "reviewed": "radiologists' reviewed labels exported from the warehouse",
            "both": "radiologists' reviewed labels and model predictions (see each annotation's provenance)"}[labels]
    coco = {
        "info": {
            "description": f"cxr data mart: {what}",
            "version": "1.0", "year": created.year, "contributor": "cxr", "labels": labels,
            "date_created": created.isoformat(timespec="seconds"), "filters": f.describe(), **(info or {}),
        },
        "licenses": [],
        "images": image_list,
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


def label_lines(coco: Mapping) -> list[str]:
    """The card's "Labels" section: reviewed labels against predictions, reviewers by role and count (never by name)."""
    per = Counter(a.get("provenance", "predicted") for a in coco["annotations"])
    reviewed = [im for im in coco["images"] if im.get("reviewed")]
    roles: dict[str, set] = {}
    for im in reviewed:
        roles.setdefault(str(im.get("reviewer_role")), set()).add(im.get("reviewer_id"))
    who = ", ".join(f"{len(ids)} {role}{'s' if len(ids) != 1 else ''}" for role, ids in sorted(roles.items()))
    no_finding = sum(1 for im in reviewed if im.get("verdict") == "no_finding")
    return ["## Labels", "", "| provenance | annotations |", "|---|---:|",
            f"| reviewed (radiologists) | {per['reviewed']} |", f"| predicted (the detector) | {per['predicted']} |", "",
            f"- Reviewed images: {len(reviewed)} of {len(coco['images'])} ({no_finding} 'no finding'); reviewers: "
            f"{who or 'none'}.", ""]


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
    labels = info.get("labels", "predicted")
    lead = {"predicted": "Boxes are **predictions of the cxr detector** stored in the warehouse, not radiologist labels.",
            "reviewed": "Boxes are **radiologists' reviewed labels** (each image's newest review), not the detector's guesses.",
            "both": "Boxes are **radiologists' reviewed labels and the detector's predictions**: see each annotation's "
                    "`provenance`."}[labels]
    lines = [
        "# cxr data mart export (COCO)",
        "",
        lead,
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
        *label_lines(coco),
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
        "- The split is by patient (a hash of the keyed patient_key) where the image has one, else by image",
        "  (a hash of its sha256): no patient is in both splits, and an image keeps its split in every export.",
    ]
    if dropped_boxes:
        lines += ["", f"{dropped_boxes} box(es) with no area inside the image were left out."]
    return "\n".join(lines) + "\n"
