"""Which transactions and boxes of the warehouse's ``images`` documents go into the mart (pure).

A document is one image with its ``transactions`` (each with ``pred_bbox`` boxes). The filters:

- ``since``/``until``: the transaction's ``time`` lies in ``[since, until)`` (UTC);
- ``model_version``: the transaction was made by this model version;
- ``latest``: of the transactions left, keep only the newest per image (else all of them);
- ``min_score``/``classes``: the boxes kept in a selected transaction;
- ``include_empty``: keep selected transactions left with no box (negatives for training);
- ``val_fraction``: the share of images put in the validation split (by patient where the image
  has a ``patient_key``, else by image; see ``coco``);
- ``labels``: ``reviewed`` (radiologists' final boxes: the newest review of each image),
  ``predicted`` (the detector's boxes) or ``both``; None (the default) means ``reviewed`` when
  any selected image has a review, else ``predicted``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import date, datetime, time, timezone

from cxr.errors import InputError

LABELS = ("reviewed", "predicted", "both")


@dataclass(frozen=True)
class MartFilters:
    since: datetime | None = None
    until: datetime | None = None
    min_score: float = 0.0
    classes: tuple[str, ...] | None = None
    model_version: str | None = None
    latest: bool = True
    include_empty: bool = True
    val_fraction: float = 0.2
    labels: str | None = None

    def __post_init__(self) -> None:
        if self.labels not in (None, "", *LABELS):
            raise InputError(f"--labels must be one of {', '.join(LABELS)}, got {self.labels!r}")
        if self.labels == "":
            object.__setattr__(self, "labels", None)
        object.__setattr__(self, "since", to_utc_naive(self.since, "since"))
        object.__setattr__(self, "until", to_utc_naive(self.until, "until"))
        if self.since and self.until and self.since >= self.until:
            raise InputError(f"--since {self.since:%Y-%m-%d %H:%M:%S} is not before --until {self.until:%Y-%m-%d %H:%M:%S}")
        if not 0.0 <= self.min_score <= 1.0:
            raise InputError(f"--min-score must lie in [0, 1], got {self.min_score}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise InputError(f"--val-fraction must lie in [0, 1), got {self.val_fraction}")
        if self.classes is not None:
            if isinstance(self.classes, str):  # "A,B" from a CLI or notebook parameter
                object.__setattr__(self, "classes", tuple(self.classes.split(",")))
            classes = tuple(dict.fromkeys(c.strip() for c in self.classes if c.strip()))
            if not classes:
                raise InputError("--classes names no class")
            object.__setattr__(self, "classes", classes)

    def describe(self) -> dict[str, object]:
        """The filters as plain values, for the dataset card and ``instances.json``'s ``info``."""
        out = asdict(self)
        for k in ("since", "until"):
            out[k] = out[k].isoformat(sep=" ") if out[k] else None
        out["classes"] = list(self.classes) if self.classes else None
        out["transactions"] = "latest per image" if self.latest else "all"
        out["labels"] = self.labels or "auto"
        del out["latest"]
        return out


def to_utc_naive(value: datetime | date | str | None, name: str = "date") -> datetime | None:
    """``2024-01-31``, ``2024-01-31T12:00``, ``...+02:00``, a date or a datetime -> naive UTC datetime.

    The warehouse stores naive UTC times (BSON dates), so comparisons happen in naive UTC.
    """
    if value is None or value == "":
        return None
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            raise InputError(f"--{name}: {value!r} is not an ISO date or date-time (e.g. 2024-01-31 or 2024-01-31T12:00)") from None
    if isinstance(value, date) and not isinstance(value, datetime):
        value = datetime.combine(value, time())
    if value.tzinfo is not None:
        value = value.astimezone(timezone.utc).replace(tzinfo=None)
    return value


def transaction_matches(tx: dict, f: MartFilters) -> bool:
    t = to_utc_naive(tx.get("time"))
    if f.since is not None and (t is None or t < f.since):
        return False
    if f.until is not None and (t is None or t >= f.until):
        return False
    if f.model_version is not None and tx.get("model_version") != f.model_version:
        return False
    return True


def _newest_key(tx: dict) -> tuple:
    return (to_utc_naive(tx.get("time")) or datetime.min, tx.get("transaction_id") or 0)


def select_transactions(doc: dict, f: MartFilters) -> list[dict]:
    """The document's transactions that pass the filters (only the newest one when ``f.latest``)."""
    txs = [tx for tx in doc.get("transactions") or () if transaction_matches(tx, f)]
    if f.latest and txs:
        return [max(txs, key=_newest_key)]
    return sorted(txs, key=_newest_key)


def select_boxes(tx: dict, f: MartFilters) -> list[dict]:
    """The transaction's boxes with ``score >= min_score`` and (when given) a class in ``classes``."""
    wanted = set(f.classes) if f.classes else None
    return [
        b for b in tx.get("pred_bbox") or ()
        if float(b.get("score") or 0.0) >= f.min_score and (wanted is None or b.get("class_name") in wanted)
    ]


def warehouse_query(f: MartFilters) -> dict:
    """A MongoDB filter that pre-selects documents with at least one matching transaction.

    It only narrows what travels over the wire; :func:`select_transactions` stays the rule.
    """
    cond: dict = {}
    if f.since is not None or f.until is not None:
        cond["time"] = {k: v for k, v in (("$gte", f.since), ("$lt", f.until)) if v is not None}
    if f.model_version is not None:
        cond["model_version"] = f.model_version
    return {"transactions": {"$elemMatch": cond}} if cond else {}


def selected(docs: Iterable[dict], f: MartFilters) -> Iterable[tuple[dict, dict, list[dict]]]:
    """``(doc, transaction, boxes)`` for every selected transaction, in document order."""
    for doc in docs:
        for tx in select_transactions(doc, f):
            boxes = select_boxes(tx, f)
            if boxes or f.include_empty:
                yield doc, tx, boxes


def _review_key(rv: dict) -> tuple:
    return (to_utc_naive(rv.get("time")) or datetime.min, rv.get("review_id") or 0)


def latest_review(doc: dict) -> tuple[dict, dict] | None:
    """``(transaction, review)`` of the image's newest review (by time, then review_id), or None."""
    found = [(tx, rv) for tx in doc.get("transactions") or () for rv in tx.get("reviews") or ()]
    return max(found, key=lambda p: _review_key(p[1])) if found else None


def reviewed_boxes(review: dict, f: MartFilters) -> list[dict]:
    """A review's final labels (accepted, corrected, added boxes), only ``classes`` when given."""
    wanted = set(f.classes) if f.classes else None
    return [b for b in review.get("boxes") or ()
            if b.get("action") in ("accept", "correct", "add") and b.get("box") is not None
            and (wanted is None or b.get("class_name") in wanted)]


def selected_reviews(docs: Iterable[dict], f: MartFilters) -> Iterable[tuple[dict, dict, dict, list[dict]]]:
    """``(doc, transaction, review, boxes)``: per image, its newest review, when the reviewed
    transaction passes the date and model filters."""
    for doc in docs:
        found = latest_review(doc)
        if found is None or not transaction_matches(found[0], f):
            continue
        boxes = reviewed_boxes(found[1], f)
        if boxes or f.include_empty:
            yield doc, found[0], found[1], boxes


def has_reviews(docs: Iterable[dict]) -> bool:
    return any(latest_review(d) is not None for d in docs)
