"""The backup's purge: delete from the DB exactly the rows a verified backup holds, after the watermark guard.

The purge never deletes a transaction the warehouse has not loaded (its id above the watermark)
unless forced, never deletes a box the lake copy lacks, and runs in ONE DB transaction. After
it, ``backup/manifests/<run_id>.purged.json`` records what was deleted.

A transaction's reviews go with it, once they are in the verified copy and the warehouse has
loaded them (the reviews watermark); a transaction with a review the copy lacks (added after
the write) is kept, and the next run backs it up again with that review. Audit rows are never
purged.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, datetime

import numpy as np
from sqlalchemy import Connection, Engine, and_, delete, exists, func, select

from cxr.backup.steps import VerifiedRun, transaction_ids
from cxr.errors import IntegrityError
from cxr.stores import layout
from cxr.stores.catalog import Stores
from cxr.stores.schema import image, pred_bounding_box, review, review_box, transaction
from cxr.stores.watermark import REVIEWS, get_watermark

#: Ids per DELETE / SELECT ... IN (...) statement (bound parameters, well under every DB's limit).
BATCH = 1000


def _batches(ids: Iterable[int]) -> Iterable[list[int]]:
    ids = [int(i) for i in ids]
    for i in range(0, len(ids), BATCH):
        yield ids[i:i + BATCH]


def check_watermark(transaction_ids: np.ndarray, watermark: int | None, force: bool) -> None:
    """Refuse to purge transactions the warehouse has not loaded yet (id above its watermark)."""
    if force or transaction_ids.size == 0:
        return
    if watermark is None:
        raise IntegrityError("purge refused: the warehouse has no watermark (nothing loaded yet); "
                             "run the warehouse ETL first, or pass --force")
    above = int((transaction_ids > watermark).sum())
    if above:
        raise IntegrityError(f"purge refused: {above} backed-up transactions are above the warehouse watermark "
                             f"{watermark} (not loaded there yet); run the warehouse ETL first, or pass --force")


def check_review_watermark(runs: list[VerifiedRun], watermark: int | None, force: bool) -> None:
    """Refuse to purge reviews the warehouse has not loaded yet (id above the reviews watermark)."""
    ids = [rid for r in runs for rids in r.reviews.values() for rid in rids]
    if force or not ids:
        return
    above = sum(1 for rid in ids if watermark is None or rid > watermark)
    if above:
        raise IntegrityError(f"purge refused: {above} backed-up reviews are above the warehouse's reviews watermark "
                             f"{watermark} (not loaded there yet); run the warehouse ETL first, or pass --force")


def _reviews_in_db(conn: Connection, tids: list[int]) -> dict[int, set[int]]:
    out: dict[int, set[int]] = {}
    for batch in _batches(tids):
        for tid, rid in conn.execute(select(review.c.transaction_id, review.c.review_id)
                                     .where(review.c.transaction_id.in_(batch))):
            out.setdefault(int(tid), set()).add(int(rid))
    return out


def _delete_reviews(conn: Connection, tids: list[int], out: dict[str, int]) -> None:
    reviews = _reviews_in_db(conn, tids)
    rids = sorted(r for rs in reviews.values() for r in rs)
    n_boxes = n_reviews = 0
    for batch in _batches(rids):
        n_boxes += conn.execute(delete(review_box).where(review_box.c.review_id.in_(batch))).rowcount
        n_reviews += conn.execute(delete(review).where(review.c.review_id.in_(batch))).rowcount
    if n_reviews:  # only tables that had rows: the counts of a purge without reviews stay as they were
        out["review_box"], out["review"] = n_boxes, n_reviews


def purge(engine: Engine, runs: list[VerifiedRun]) -> dict[str, int]:
    """Delete exactly the verified rows, in ONE DB transaction; return the counts deleted.

    Before deleting, every backed-up transaction still in the DB must have exactly the boxes the
    lake copy has (a box added after the backup would otherwise be lost): else IntegrityError and
    nothing is deleted. Transactions already gone (a purge that committed before a crash) are skipped.
    """
    tids = transaction_ids(runs)
    iids = np.unique(np.concatenate([r.image_ids for r in runs])) if runs else np.array([], dtype=np.int64)
    backed: dict[int, int] = {}
    backed_reviews: dict[int, set[int]] = {}
    for r in runs:
        backed.update(r.boxes_per_transaction)
        for tid, rids in r.reviews.items():
            backed_reviews.setdefault(tid, set()).update(rids)
    out = {"pred_bounding_box": 0, "transaction": 0, "image": 0}
    with engine.begin() as conn:
        present: list[int] = []
        for batch in _batches(tids):
            present += [int(r[0]) for r in conn.execute(
                select(transaction.c.transaction_id).where(transaction.c.transaction_id.in_(batch)))]
        in_db_reviews = _reviews_in_db(conn, present)
        kept = {t for t in present if not in_db_reviews.get(t, set()) <= backed_reviews.get(t, set())}
        present = [t for t in present if t not in kept]
        in_db = 0
        for batch in _batches(present):
            in_db += conn.execute(select(func.count()).select_from(pred_bounding_box).where(
                pred_bounding_box.c.transaction_id.in_(batch))).scalar_one()
        expected = sum(backed.get(t, 0) for t in present)
        if in_db != expected:
            raise IntegrityError(f"purge refused: the DB holds {in_db} boxes for the backed-up transactions, "
                                 f"the verified backup {expected}; nothing was deleted")
        _delete_reviews(conn, present, out)
        for batch in _batches(present):
            out["pred_bounding_box"] += conn.execute(
                delete(pred_bounding_box).where(pred_bounding_box.c.transaction_id.in_(batch))).rowcount
        for batch in _batches(present):
            out["transaction"] += conn.execute(delete(transaction).where(transaction.c.transaction_id.in_(batch))).rowcount
        still_used = exists().where(transaction.c.image_id == image.c.image_id)
        for batch in _batches(iids):
            out["image"] += conn.execute(delete(image).where(and_(image.c.image_id.in_(batch), ~still_used))).rowcount
    if kept:
        out["kept_reviewed_after_backup"] = len(kept)
    return out


def purge_record(run: VerifiedRun, counts: dict[str, int]) -> bytes:
    """The ``<run_id>.purged.json`` record of a purge."""
    return json.dumps({"run_id": run.manifest.run_id, "purged_at": datetime.now(UTC).isoformat(),
                       "transactions": int(run.transaction_ids.size), "batch_deleted": counts}).encode()


def purge_verified(stores: Stores, runs: list[VerifiedRun], *, force: bool) -> dict[str, int]:
    """Guard (watermark), delete (one DB transaction), record (one ``.purged.json`` per run)."""
    watermark = None if force else get_watermark(stores.warehouse)
    check_watermark(transaction_ids(runs), watermark, force)
    check_review_watermark(runs, None if force else get_watermark(stores.warehouse, REVIEWS), force)
    counts = purge(stores.engine, runs)
    for r in runs:
        stores.lake.put(layout.purged_key(r.manifest.run_id), purge_record(r, counts), content_type="application/json")
    return counts
