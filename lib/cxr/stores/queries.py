"""Read queries shared by the stages (SQLAlchemy Core, parameterized).

``JOINED_COLUMNS`` is the one flat row shape used everywhere downstream: the backup's parquet,
the warehouse transform's input and the restore's output all carry exactly these names
(the seed's column names plus lineage). A transaction with no boxes yields one row whose box
columns are NULL: a LEFT JOIN, never the seed's inner join, which dropped it.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Select, select

from cxr.stores.schema import image, pred_bounding_box, review, review_box, transaction

#: Columns added after the first release (migrations 0002, 0004) come last, so positions of the others hold.
IMAGE_COLUMNS = ("image_id", "sha256", "bucket", "folder", "image_file", "width", "height", "source_format", "created_at",
                 "study_key", "patient_key", "intensity_mean", "intensity_std")
TRANSACTION_COLUMNS = ("transaction_id", "time", "cs_thr", "nms_thr", "model_version", "run_id", "source",
                       "skip_reason", "user_id")
BOX_COLUMNS = ("pred_bbox_id", "pred_class", "class_id", "pred_cs", "x_min", "y_min", "x_max", "y_max")
_ADDED = ("study_key", "patient_key", "source", "skip_reason", "user_id", "intensity_mean", "intensity_std")
JOINED_COLUMNS: tuple[str, ...] = tuple(c for c in IMAGE_COLUMNS + TRANSACTION_COLUMNS if c not in _ADDED) + \
    BOX_COLUMNS + _ADDED


def joined_rows(*, min_transaction_id: int | None = None, max_transaction_id: int | None = None,
                before: datetime | None = None) -> Select:
    """image ⋈ transaction ⟕ pred_bounding_box, ordered by (image_id, transaction_id, pred_bbox_id).

    ``min_transaction_id`` is exclusive (a watermark), ``max_transaction_id`` inclusive,
    ``before`` an exclusive upper bound on ``transaction.time``.
    """
    table_of = {**{c: image for c in IMAGE_COLUMNS}, **{c: transaction for c in TRANSACTION_COLUMNS},
                **{c: pred_bounding_box for c in BOX_COLUMNS}}
    cols = [table_of[c].c[c] for c in JOINED_COLUMNS]
    q = (
        select(*cols)
        .select_from(
            image.join(transaction, transaction.c.image_id == image.c.image_id).outerjoin(
                pred_bounding_box, pred_bounding_box.c.transaction_id == transaction.c.transaction_id
            )
        )
        .order_by(image.c.image_id, transaction.c.transaction_id, pred_bounding_box.c.pred_bbox_id)
    )
    if min_transaction_id is not None:
        q = q.where(transaction.c.transaction_id > min_transaction_id)
    if max_transaction_id is not None:
        q = q.where(transaction.c.transaction_id <= max_transaction_id)
    if before is not None:
        q = q.where(transaction.c.time < before)
    return q


#: A review and its boxes as flat rows (review ⟕ review_box: a review without boxes gives one row with
#: NULL box columns), the shape of the backup's ``reviews.parquet`` and of the warehouse transform's input.
REVIEW_COLUMNS = ("review_id", "transaction_id", "reviewer_id", "reviewer_role", "time", "verdict", "source",
                  "reader_ref")
REVIEW_BOX_COLUMNS = ("review_box_id", "pred_bbox_id", "action", "class_name", "class_id", "x_min", "y_min", "x_max",
                      "y_max")
REVIEW_ROW_COLUMNS = REVIEW_COLUMNS + REVIEW_BOX_COLUMNS


def review_rows(*, transaction_ids: list[int] | None = None, min_review_id: int | None = None,
                max_review_id: int | None = None, min_transaction_id: int | None = None,
                max_transaction_id: int | None = None) -> Select:
    """review ⟕ review_box as :data:`REVIEW_ROW_COLUMNS`, ordered by (review_id, review_box_id).

    ``min_*`` bounds are exclusive (watermarks), ``max_*`` inclusive.
    """
    cols = [review.c[c] for c in REVIEW_COLUMNS] + [review_box.c[c] for c in REVIEW_BOX_COLUMNS]
    q = (select(*cols).select_from(review.outerjoin(review_box, review_box.c.review_id == review.c.review_id))
         .order_by(review.c.review_id, review_box.c.review_box_id))
    if transaction_ids is not None:
        q = q.where(review.c.transaction_id.in_([int(t) for t in transaction_ids]))
    for col, lo, hi in ((review.c.review_id, min_review_id, max_review_id),
                        (review.c.transaction_id, min_transaction_id, max_transaction_id)):
        if lo is not None:
            q = q.where(col > int(lo))
        if hi is not None:
            q = q.where(col <= int(hi))
    return q
