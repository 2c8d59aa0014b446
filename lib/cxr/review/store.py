"""Reviews in the DB: open a stored transaction for review (audited as a view), save a review
(``review`` + ``review_box`` rows and the ``review`` audit event in one DB transaction), read them.

Nothing is overwritten: each review is a new set of rows, a second reviewer's review a second set.
Only a radiologist (or an admin) may open or review a transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, func, insert, select

from cxr.auth.audit import Actor, append, utcnow
from cxr.auth.users import Principal
from cxr.errors import InputError
from cxr.review.rules import Decision, PredictedBox
from cxr.stores import layout
from cxr.stores.lake import Lake
from cxr.stores.queries import REVIEW_BOX_COLUMNS, REVIEW_COLUMNS, review_rows
from cxr.stores.schema import image, pred_bounding_box, review, review_box, transaction

@dataclass(frozen=True)
class ReviewCase:
    """A stored transaction opened for review: its image (PNG rendition) and predicted boxes."""

    transaction_id: int
    image_id: int
    width: int
    height: int
    model_version: str
    rendition_png: bytes
    boxes: tuple[PredictedBox, ...]
    earlier_reviews: int


def require_reviewer(p: Principal) -> None:
    if not p.may("radiologist"):
        raise InputError(f"{p.username} is an {p.role}: only a radiologist or an admin reviews predictions")


def predicted_boxes(conn: Connection, transaction_id: int) -> tuple[PredictedBox, ...]:
    b = pred_bounding_box.c
    rows = conn.execute(select(b.pred_bbox_id, b.class_id, b.pred_class, b.pred_cs, b.x_min, b.y_min, b.x_max, b.y_max)
                        .where(b.transaction_id == int(transaction_id)).order_by(b.pred_bbox_id)).all()
    return tuple(PredictedBox(int(r.pred_bbox_id), int(r.class_id), r.pred_class, float(r.pred_cs),
                              (float(r.x_min), float(r.y_min), float(r.x_max), float(r.y_max))) for r in rows)


def open_case(engine: Engine, lake: Lake, transaction_id: int, reviewer: Principal, *, client_addr: str | None) -> ReviewCase:
    """Load a transaction for review and audit the view (refused, and audited as denied, below radiologist)."""
    actor = reviewer.actor(client_addr)
    if not reviewer.may("radiologist"):
        with engine.begin() as conn:
            append(conn, actor, "view_image", outcome="denied", object_type="transaction", object_ids=[transaction_id])
        require_reviewer(reviewer)
    with engine.connect() as conn:
        row = conn.execute(select(transaction.c.transaction_id, transaction.c.model_version, image.c.image_id,
                                  image.c.sha256, image.c.width, image.c.height)
                           .select_from(transaction.join(image, image.c.image_id == transaction.c.image_id))
                           .where(transaction.c.transaction_id == int(transaction_id))).first()
        if row is None:
            raise InputError(f"no transaction {transaction_id} in the DB (purged to the backup, or never stored)")
        boxes = predicted_boxes(conn, transaction_id)
        earlier = conn.execute(select(func.count()).select_from(review)
                               .where(review.c.transaction_id == int(transaction_id))).scalar_one()
    png = lake.get(layout.rendition_key(row.sha256))
    with engine.begin() as conn:
        append(conn, actor, "view_image", object_type="transaction", object_ids=[transaction_id],
               detail={"image_id": int(row.image_id)})
    return ReviewCase(int(row.transaction_id), int(row.image_id), int(row.width), int(row.height), row.model_version,
                      png, boxes, int(earlier))


def insert_review(conn: Connection, transaction_id: int, reviewer: Principal, verdict: str,
                  decisions: Sequence[Decision], *, source: str, reader_ref: str | None, actor: Actor) -> int:
    """The rows of one review and its audit event, in the caller's DB transaction; the review_id."""
    rid = conn.execute(insert(review).values(
        transaction_id=int(transaction_id), reviewer_id=reviewer.user_id, reviewer_role=reviewer.role, time=utcnow(),
        verdict=verdict, source=source, reader_ref=reader_ref)).inserted_primary_key[0]
    if decisions:
        conn.execute(insert(review_box), [{
            "review_id": rid, "pred_bbox_id": d.pred_bbox_id, "action": d.action, "class_name": d.class_name,
            "class_id": d.class_id, **dict(zip(("x_min", "y_min", "x_max", "y_max"), d.box or (None,) * 4)),
        } for d in decisions])
    counts = {a: sum(1 for d in decisions if d.action == a) for a in ("accept", "reject", "correct", "add")}
    append(conn, actor, "review", object_type="transaction", object_ids=[transaction_id],
           detail={"review_id": int(rid), "verdict": verdict, "source": source, **counts})
    return int(rid)


def save_review(engine: Engine, transaction_id: int, reviewer: Principal, verdict: str, decisions: Sequence[Decision],
                *, client_addr: str | None = None) -> int:
    """Store a dashboard review; every predicted box of the transaction must be judged exactly once."""
    require_reviewer(reviewer)
    with engine.begin() as conn:
        predicted = {p.pred_bbox_id for p in predicted_boxes(conn, transaction_id)}
        judged = [d.pred_bbox_id for d in decisions if d.pred_bbox_id is not None]
        if sorted(judged) != sorted(predicted):
            missing, extra = predicted - set(judged), set(judged) - predicted
            raise InputError(f"the review must judge each predicted box of transaction {transaction_id} once "
                             f"(missing {sorted(missing)}, not its own {sorted(extra)})")
        return insert_review(conn, transaction_id, reviewer, verdict, decisions, source="dashboard", reader_ref=None,
                             actor=reviewer.actor(client_addr))


def reviews_of(engine: Engine, transaction_id: int) -> list[dict[str, Any]]:
    """The transaction's reviews, oldest first, each with its ``boxes``."""
    with engine.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(review_rows(transaction_ids=[transaction_id]))]
    out: dict[int, dict[str, Any]] = {}
    for r in rows:
        rv = out.setdefault(r["review_id"], {**{c: r[c] for c in REVIEW_COLUMNS}, "boxes": []})
        if r["review_box_id"] is not None:
            rv["boxes"].append({c: r[c] for c in REVIEW_BOX_COLUMNS})
    return list(out.values())
