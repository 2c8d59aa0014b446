"""The dashboard's history panel: recent transactions with their image and box count."""

from __future__ import annotations

from sqlalchemy import Engine, func, select

from cxr.stores.schema import image, pred_bounding_box, transaction


def recent_uploads(engine: Engine, limit: int = 10) -> list[dict]:
    """The latest ``limit`` transactions, newest first (one parameterized query)."""
    n_boxes = (
        select(func.count(pred_bounding_box.c.pred_bbox_id))
        .where(pred_bounding_box.c.transaction_id == transaction.c.transaction_id)
        .scalar_subquery()
    )
    q = (
        select(transaction.c.transaction_id, transaction.c.time, transaction.c.cs_thr, transaction.c.nms_thr,
               transaction.c.model_version, image.c.image_id, image.c.original_name, image.c.image_file,
               image.c.source_format, n_boxes.label("n_boxes"))
        .select_from(transaction.join(image, image.c.image_id == transaction.c.image_id))
        .order_by(transaction.c.transaction_id.desc())
        .limit(int(limit))
    )
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(q)]
