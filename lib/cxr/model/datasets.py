"""Dataset readers and writers: COCO JSON (the mart's output) and VinDr-CXR CSV.

A :class:`Sample` is one image with its boxes (xyxy pixels) and labels (indices into ``classes``).
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pydicom
from PIL import Image

from cxr.errors import InputError
from cxr.model.classes import resolve_classes
from cxr.model.pixels import dicom_to_array, parse_dicom, read_raster

VINDR_COLUMNS = ("image_id", "class_name", "class_id", "rad_id", "x_min", "y_min", "x_max", "y_max")
NO_FINDING = "No finding"
IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".dicom", ".dcm")


@dataclass
class Sample:
    image_path: Path
    boxes: np.ndarray
    labels: np.ndarray
    width: int
    height: int
    image_id: str = ""
    classes: tuple[str, ...] = field(default_factory=tuple)


def load_image(path: str | Path) -> np.ndarray:
    """A training or evaluation image as 2-D float32 [0, 1], through :mod:`cxr.model.pixels`: the
    same function the ingest path serves pixels with (DICOM LUTs and windows, colour encodings)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputError(f"{path}: unreadable image ({exc.__class__.__name__})") from None
    try:
        if path.suffix.lower() in (".dcm", ".dicom") or (len(data) >= 132 and data[128:132] == b"DICM"):
            return dicom_to_array(parse_dicom(data))
        return read_raster(data)
    except InputError as exc:
        raise InputError(f"{path}: {exc}") from None


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) from the file header."""
    try:
        if path.suffix.lower() in (".dcm", ".dicom"):
            ds = pydicom.dcmread(path, stop_before_pixels=True)
            return int(ds.Columns), int(ds.Rows)
        with Image.open(path) as im:
            return im.size
    except (OSError, ValueError, AttributeError) as exc:
        raise InputError(f"{path}: unreadable image ({exc.__class__.__name__})") from None


# ---------------------------------------------------------------------------------------------- COCO


def _coco_paths(path: Path) -> tuple[Path, Path]:
    path = Path(path)
    if path.is_dir():
        ann = path / "annotations" / "instances.json"
        return ann, path / "images"
    return path, path.parent.parent / "images" if path.parent.name == "annotations" else path.parent


def reviewed_only(coco: dict) -> dict:
    """A cxr mart export restricted to its reviewed labels: the images a radiologist reviewed (a
    "no finding" one with no box) and the annotations of ``provenance`` "reviewed". A COCO file
    without reviewed labels (a predictions-only export, any other data set) is returned as it is."""
    if not isinstance(coco, dict) or not any(isinstance(im, dict) and im.get("reviewed")
                                             for im in coco.get("images") or ()):
        return coco
    anns = coco.get("annotations", [])
    images = [im for im in coco["images"] if im.get("reviewed")]
    ids = {im["id"] for im in images}
    return {**coco, "images": images,
            "annotations": [a for a in anns if a.get("provenance") == "reviewed" and a["image_id"] in ids]}


def read_coco(path: str | Path, classes=None, *, labels: str = "reviewed") -> list[Sample]:
    """Read a COCO dataset: a dir with annotations/instances.json + images/, or the JSON file itself.

    ``labels="reviewed"`` (the default): from a cxr mart export that has reviewed labels, only
    those (:func:`reviewed_only`); ``"all"``: every annotation, predicted ones included."""
    ann_path, images_dir = _coco_paths(Path(path))
    if not ann_path.is_file():
        raise InputError(f"{ann_path}: COCO annotations not found")
    try:
        coco = json.loads(ann_path.read_text(encoding="utf-8"))
        if labels == "reviewed":
            coco = reviewed_only(coco)
        cats = sorted(coco["categories"], key=lambda c: c["id"])
        images = coco["images"]
        anns = coco.get("annotations", [])
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise InputError(f"{ann_path}: not a COCO instances file ({exc.__class__.__name__}: {exc})") from None
    cls = resolve_classes(classes if classes is not None else [c["name"] for c in cats])
    cat_to_label = {c["id"]: cls.index(c["name"]) for c in cats if c["name"] in cls}
    by_image: dict = {im["id"]: [] for im in images}
    for a in anns:
        if a.get("iscrowd", 0) or a["category_id"] not in cat_to_label or a["image_id"] not in by_image:
            continue
        by_image[a["image_id"]].append(a)
    samples = []
    for im in images:
        boxes, labels = [], []
        for a in by_image[im["id"]]:
            x, y, w, h = (float(v) for v in a["bbox"])
            if w > 0 and h > 0:
                boxes.append([x, y, x + w, y + h])
                labels.append(cat_to_label[a["category_id"]])
        image_path = images_dir / im["file_name"]
        if not image_path.exists() and (images_dir.parent / im["file_name"]).exists():
            image_path = images_dir.parent / im["file_name"]  # file_name given relative to the dataset root
        samples.append(Sample(image_path, np.asarray(boxes, np.float32).reshape(-1, 4),
                              np.asarray(labels, np.int64), int(im["width"]), int(im["height"]),
                              str(im.get("id")), cls))
    return samples


def write_coco(samples: list[Sample], path: str | Path, classes=None, *, description: str = "cxr") -> Path:
    """Write ``samples`` as COCO instances JSON (file names relative to the images dir)."""
    cls = tuple(classes) if classes is not None else (samples[0].classes if samples else ())
    out = {"info": {"description": description}, "licenses": [],
           "categories": [{"id": i + 1, "name": n, "supercategory": "finding"} for i, n in enumerate(cls)],
           "images": [], "annotations": []}
    ann_id = 1
    for i, s in enumerate(samples, start=1):
        out["images"].append({"id": i, "file_name": Path(s.image_path).name, "width": s.width, "height": s.height})
        for b, lab in zip(s.boxes, s.labels):
            w, h = float(b[2] - b[0]), float(b[3] - b[1])
            out["annotations"].append({"id": ann_id, "image_id": i, "category_id": int(lab) + 1,
                                       "bbox": [float(b[0]), float(b[1]), w, h], "area": w * h, "iscrowd": 0})
            ann_id += 1
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out), encoding="utf-8")
    return path


# ---------------------------------------------------------------------------------------------- VinDr


def find_image(images_dir: Path, image_id: str) -> Path:
    """The file `<image_id>.<ext>` in ``images_dir`` (png, jpg, jpeg, dicom, dcm), else InputError."""
    for ext in IMAGE_EXTS:
        p = images_dir / f"{image_id}{ext}"
        if p.is_file():
            return p
    raise InputError(f"{images_dir}: no image file for image_id {image_id!r} (tried {', '.join(IMAGE_EXTS)})")


def _num(value: str) -> float:
    try:
        return float(value) if value not in ("", None) else math.nan
    except ValueError:
        return math.nan


def read_vindr_csv(path: str | Path, images_dir: str | Path, classes=None) -> list[Sample]:
    """Read a VinDr-CXR CSV (image_id, class_name, class_id, rad_id, x_min, y_min, x_max, y_max).

    "No finding" rows (class 14, empty coordinates) give images without boxes. Boxes of every
    radiologist are kept. ``classes`` defaults to the CSV's classes ordered by class_id.
    """
    path, images_dir = Path(path), Path(images_dir)
    if not path.is_file():
        raise InputError(f"{path}: VinDr CSV not found")
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in ("image_id", "class_name", "x_min", "y_min", "x_max", "y_max") if c not in (reader.fieldnames or [])]
        if missing:
            raise InputError(f"{path}: not a VinDr-CXR CSV, missing column(s) {', '.join(missing)}")
        rows = list(reader)
    if classes is None:
        named = {}
        for row in rows:
            if row["class_name"] != NO_FINDING:
                named.setdefault(row["class_name"], int(_num(row.get("class_id", "")) if row.get("class_id") else 0))
        classes = sorted(named, key=lambda n: (named[n], n))
    cls = resolve_classes(classes)
    per_image: dict[str, list] = {}
    for row in rows:
        items = per_image.setdefault(row["image_id"], [])
        if row["class_name"] == NO_FINDING or row["class_name"] not in cls:
            continue
        box = [_num(row[k]) for k in ("x_min", "y_min", "x_max", "y_max")]
        if any(math.isnan(v) for v in box) or box[2] <= box[0] or box[3] <= box[1]:
            continue
        items.append((box, cls.index(row["class_name"])))
    samples = []
    for image_id, items in per_image.items():
        img = find_image(images_dir, image_id)
        w, h = image_size(img)
        samples.append(Sample(img, np.asarray([b for b, _ in items], np.float32).reshape(-1, 4),
                              np.asarray([lab for _, lab in items], np.int64), int(w), int(h), image_id, cls))
    return samples


def write_vindr_csv(samples: list[Sample], path: str | Path, *, rad_id: str = "R0") -> Path:
    """Write ``samples`` in VinDr-CXR CSV form (images without boxes as "No finding", class_id 14)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(VINDR_COLUMNS)
        for s in samples:
            image_id = s.image_id or Path(s.image_path).stem
            if len(s.boxes) == 0:
                w.writerow([image_id, NO_FINDING, 14, rad_id, "", "", "", ""])
            for b, lab in zip(s.boxes, s.labels):
                w.writerow([image_id, s.classes[int(lab)], int(lab), rad_id] + [f"{float(v):.2f}" for v in b])
    return path


def read_dataset(path: str | Path, fmt: str | None = None, *, images_dir: str | Path | None = None,
                 classes=None) -> list[Sample]:
    """``fmt`` "coco" (dir or JSON) or "vindr" (CSV + images dir); guessed from the path when None."""
    path = Path(path)
    if fmt is None:
        fmt = "vindr" if path.suffix.lower() == ".csv" else "coco"
    if fmt == "coco":
        return read_coco(path, classes)
    if fmt == "vindr":
        return read_vindr_csv(path, images_dir or path.parent / "images", classes)
    raise InputError(f"unknown dataset format {fmt!r}; use coco or vindr")
