"""The dashboard's history panel: recent transactions with their image, box and review counts."""

from __future__ import annotations

from sqlalchemy import Engine, func, select

from cxr.stores.schema import image, pred_bounding_box, review, transaction


def recent_uploads(engine: Engine, limit: int = 10, *, user_id: int | None = None) -> list[dict]:
    """The latest ``limit`` transactions, newest first (one parameterized query); only those
    ``user_id`` uploaded when given (an uploader sees only their own)."""
    n_boxes = (
        select(func.count(pred_bounding_box.c.pred_bbox_id))
        .where(pred_bounding_box.c.transaction_id == transaction.c.transaction_id)
        .scalar_subquery()
    )
    n_reviews = (
        select(func.count(review.c.review_id)).where(review.c.transaction_id == transaction.c.transaction_id)
        .scalar_subquery()
    )
    q = (
        select(transaction.c.transaction_id, transaction.c.time, transaction.c.cs_thr, transaction.c.nms_thr,
               transaction.c.model_version, image.c.image_id, image.c.original_name, image.c.image_file,
               image.c.source_format, n_boxes.label("n_boxes"),
               n_reviews.label("n_reviews"))
        .select_from(transaction.join(image, image.c.image_id == transaction.c.image_id))
        .order_by(transaction.c.transaction_id.desc())
        .limit(int(limit))
    )
    if user_id is not None:
        q = q.where(transaction.c.user_id == int(user_id))
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(q)]
