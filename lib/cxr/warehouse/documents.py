"""Pure transform: flat ``JOINED_COLUMNS`` rows -> one warehouse document per image, and merges.

A document (collection ``images``, unique on ``image_id``)::

    {image_id, sha256, bucket, folder, image_file, width, height, study_key, patient_key,
     intensity_mean, intensity_std,
     transactions: [{transaction_id, time, cs_thr, nms_thr, model_version, run_id, source, skip_reason,
                     mode: "Object Detection",
                     pred_bbox: [{pred_bbox_id, class_id, class_name, score,
                                  box: [x_min, y_min, x_max, y_max]}],
                     reviews: [{review_id, reviewer_id, reviewer_role, time, verdict, source, reader_ref,
                                boxes: [{review_box_id, pred_bbox_id, action, class_id, class_name,
                                         box: [x_min, y_min, x_max, y_max] or None}]}]}],
     created_at, updated_at}

``reviews`` (radiologists' reviews, oldest first) come from ``REVIEW_ROW_COLUMNS`` rows
(:func:`reviews_from_rows`); a review's box ``box`` is None when it rejects the predicted box.

``transactions`` is sorted by ``transaction_id`` and ``pred_bbox`` by ``pred_bbox_id``;
``created_at`` is when cxr first stored the image (``image.created_at``, the same name) and ``updated_at`` the
time of the newest transaction in the document. Both follow from the rows alone, so the same rows
give the same document whether they come from the DB or the backup parquet, in any order, in one
load or many: that is what makes loads idempotent and a rebuild equal to the incremental result.

Values are normalised to what BSON stores (plain ``int``/``float``/``str``, naive UTC datetimes
truncated to milliseconds, ``None`` for SQL NULL / NaN), so a document built here compares equal
to the same document read back from the warehouse.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime
from itertools import groupby
from operator import itemgetter

MODE = "Object Detection"
IMAGE_FIELDS = ("image_id", "sha256", "bucket", "folder", "image_file", "width", "height", "study_key", "patient_key",
                "intensity_mean", "intensity_std")
DOCUMENT_FIELDS = IMAGE_FIELDS + ("transactions", "created_at", "updated_at")


# -- value normalisation (DB rows, pandas rows and BSON agree) ------------------------------
def _missing(value: object) -> bool:
    """SQL NULL, float NaN, pandas NA/NaT (fast path first: most values are plain)."""
    if value is None:
        return True
    kind = type(value)
    if kind is float:
        return value != value  # NaN
    if kind is int or kind is str or kind is datetime:
        return False
    if isinstance(value, float):  # numpy float64
        return math.isnan(value)
    return kind.__name__ in ("NaTType", "NAType")


def _int(value: object) -> int | None:
    return None if _missing(value) else int(value)  # type: ignore[arg-type]


def _float(value: object) -> float | None:
    return None if _missing(value) else float(value)  # type: ignore[arg-type]


def _str(value: object) -> str | None:
    return None if _missing(value) else str(value)


def bson_time(value: object) -> datetime | None:
    """A naive UTC datetime with millisecond precision (what BSON keeps), from datetime/Timestamp."""
    if _missing(value):
        return None
    if hasattr(value, "to_pydatetime"):  # pandas Timestamp
        value = value.to_pydatetime()  # type: ignore[union-attr]
    if not isinstance(value, datetime):
        raise TypeError(f"expected a datetime, got {type(value).__name__}")
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value.replace(microsecond=value.microsecond - value.microsecond % 1000)


# -- rows -> documents ------------------------------------------------------------------------
#: (document field = row column, how to normalise it)
_IMAGE_SPEC = (("image_id", _int), ("sha256", _str), ("bucket", _str), ("folder", _str), ("image_file", _str),
               ("width", _int), ("height", _int), ("study_key", _str), ("patient_key", _str),
               ("intensity_mean", _float), ("intensity_std", _float))
_TRANSACTION_SPEC = (("transaction_id", _int), ("time", bson_time), ("cs_thr", _float), ("nms_thr", _float),
                     ("model_version", _str), ("run_id", _str), ("source", _str), ("skip_reason", _str))


def _pick(row: Mapping, spec: tuple) -> dict:
    """The spec's fields of a row; a field the row lacks (a row of an older backup run) is None."""
    return {name: convert(row.get(name)) for name, convert in spec}


_REVIEW_SPEC = (("review_id", _int), ("reviewer_id", _int), ("reviewer_role", _str), ("time", bson_time),
                ("verdict", _str), ("source", _str), ("reader_ref", _str))
Reviews = Mapping[int, list[dict]]  # transaction_id -> its review sub-documents, by review_id


def reviews_from_rows(rows: Iterable[Mapping]) -> dict[int, list[dict]]:
    """``transaction_id -> [review, ...]`` from ``REVIEW_ROW_COLUMNS`` rows in any order (duplicates collapse)."""
    by_review: dict[int, dict] = {}
    boxes: dict[int, dict[int, dict]] = {}
    for r in rows:
        rid = _int(r["review_id"])
        if rid not in by_review:
            by_review[rid] = {**_pick(r, _REVIEW_SPEC), "transaction_id": _int(r["transaction_id"])}
            boxes[rid] = {}
        if not _missing(r.get("review_box_id")):
            coords = [_float(r[k]) for k in ("x_min", "y_min", "x_max", "y_max")]
            boxes[rid][_int(r["review_box_id"])] = {  # type: ignore[index]
                "review_box_id": _int(r["review_box_id"]), "pred_bbox_id": _int(r["pred_bbox_id"]),
                "action": _str(r["action"]), "class_id": _int(r["class_id"]), "class_name": _str(r["class_name"]),
                "box": None if any(c is None for c in coords) else coords,
            }
    out: dict[int, list[dict]] = {}
    for rid in sorted(by_review):
        rv = by_review[rid]
        tid = rv.pop("transaction_id")
        rv["boxes"] = [boxes[rid][k] for k in sorted(boxes[rid])]
        out.setdefault(tid, []).append(rv)
    return out


def transaction_from_rows(rows: list[Mapping], reviews: Reviews | None = None) -> dict:
    """One transaction sub-document from the rows of that transaction (a box per row, or one NULL row)."""
    first = rows[0]
    boxes = [
        {
            "pred_bbox_id": _int(r["pred_bbox_id"]),
            "class_id": _int(r["class_id"]),
            "class_name": _str(r["pred_class"]),
            "score": _float(r["pred_cs"]),
            "box": [_float(r["x_min"]), _float(r["y_min"]), _float(r["x_max"]), _float(r["y_max"])],
        }
        for r in rows
        if not _missing(r["pred_bbox_id"])
    ]
    boxes.sort(key=itemgetter("pred_bbox_id"))
    tx = _pick(first, _TRANSACTION_SPEC)
    return {**tx, "mode": MODE, "pred_bbox": boxes, "reviews": list((reviews or {}).get(tx["transaction_id"], []))}


def document_from_rows(rows: list[Mapping], reviews: Reviews | None = None) -> dict:
    """The document of one image from all of its rows (any order; duplicate rows collapse), with the
    transactions' ``reviews``."""
    first = rows[0]
    by_tx: dict[int, dict[object, Mapping]] = {}
    for r in rows:
        # key on pred_bbox_id so a box read from both the backup and the DB counts once
        by_tx.setdefault(_int(r["transaction_id"]), {})[_int(r["pred_bbox_id"])] = r  # type: ignore[index]
    transactions = [transaction_from_rows(list(boxes.values()), reviews) for _, boxes in sorted(by_tx.items())]
    return {**_pick(first, _IMAGE_SPEC), "transactions": transactions,
            "created_at": bson_time(first["created_at"]), "updated_at": _newest(transactions)}


def documents_from_rows(rows: Iterable[Mapping], reviews: Reviews | None = None) -> Iterator[dict]:
    """One document per image from rows ordered (grouped) by ``image_id``, as ``joined_rows`` returns them.

    Streams: holds one image's rows at a time. Rows that are not grouped by image yield several
    partial documents for one image; :func:`merge_documents` combines them.
    """
    for _, group in groupby(rows, key=lambda r: r["image_id"]):
        yield document_from_rows(list(group), reviews)


def _newest(transactions: list[dict]) -> datetime | None:
    times = [t["time"] for t in transactions if t["time"] is not None]
    return max(times) if times else None


# -- merging ----------------------------------------------------------------------------------
def merge_documents(existing: Mapping, new: Mapping) -> dict:
    """``existing`` with the transactions of ``new`` it lacks (by ``transaction_id``), in order.

    Idempotent (``merge(merge(a, b), b) == merge(a, b)``) and order-free on the transactions.
    Image fields keep the existing values; ``created_at`` is the earlier of the two.
    """
    if existing["image_id"] != new["image_id"]:
        raise ValueError(f"cannot merge image {new['image_id']} into image {existing['image_id']}")
    merged = {k: existing[k] for k in DOCUMENT_FIELDS if k in existing}
    have = {t["transaction_id"] for t in existing.get("transactions", [])}
    transactions = list(existing.get("transactions", [])) + [
        t for t in new.get("transactions", []) if t["transaction_id"] not in have
    ]
    transactions.sort(key=itemgetter("transaction_id"))
    merged["transactions"] = transactions
    created = [d.get("created_at") for d in (existing, new) if d.get("created_at") is not None]
    merged["created_at"] = min(created) if created else None
    merged["updated_at"] = _newest(transactions)
    return merged


def merge_updates(doc: Mapping) -> list[tuple[dict, dict]]:
    """(filter, update) pairs that merge ``doc``'s transactions into its stored document.

    One pair per transaction: ``$push`` it (keeping the array sorted) only where the stored
    document does not hold that ``transaction_id`` yet. Each update is atomic on its document, so
    re-running it or running it from two loads at once never duplicates a transaction. Plain
    update operators only (``$push``/``$each``/``$sort``, ``$max``, ``$min``), which DocumentDB has.
    """
    pairs = []
    for tx in doc["transactions"]:
        update: dict = {"$push": {"transactions": {"$each": [tx], "$sort": {"transaction_id": 1}}}}
        if tx["time"] is not None:
            update["$max"] = {"updated_at": tx["time"]}
        if doc.get("created_at") is not None:
            update["$min"] = {"created_at": doc["created_at"]}
        pairs.append(({"image_id": doc["image_id"], "transactions.transaction_id": {"$ne": tx["transaction_id"]}}, update))
    return pairs


def review_updates(image_of: Mapping[int, int], reviews: Reviews) -> list[tuple[dict, dict]]:
    """(filter, update) pairs that add reviews to transactions already in the warehouse.

    ``image_of``: ``transaction_id -> image_id``. One pair per review: ``$push`` it onto the matching
    transaction's ``reviews`` (the positional ``$`` of an ``$elemMatch``) only where that transaction
    does not hold its ``review_id`` yet, so a re-run adds nothing twice.
    """
    pairs = []
    for tid, items in reviews.items():
        for rv in items:
            pairs.append(({"image_id": image_of[tid], "transactions": {"$elemMatch": {
                "transaction_id": tid, "reviews.review_id": {"$ne": rv["review_id"]}}}},
                {"$push": {"transactions.$.reviews": rv}}))
    return pairs

