"""The warehouse ETL jobs: incremental load above the watermark, and a rebuild from backup + DB.

**Incremental** (:func:`run_incremental`): read the watermark (``etl_state``), fix the upper bound
(the DB's highest ``transaction_id`` now), stream the joined rows in between with ``yield_per``,
turn them into one document per image (:mod:`cxr.warehouse.documents`) and write them in batches
of ``warehouse_batch_size`` with one ``bulk_write`` each:

- an image with no document yet gets an ``InsertOne`` of its whole document;
- an image that has one gets an ``UpdateOne`` per transaction that ``$push``es it only where the
  document lacks that ``transaction_id`` (atomic per document).

(An upsert per image would do the same in one statement, but on SecantusDB an upsert costs as
much as a single ``insert_one``; the look-up of which images exist is one indexed ``$in`` query
per batch, and new documents then go in as a bulk insert.) The unique index on ``image_id``
decides races: when another run inserted the same image between our look-up and our insert, the
insert fails with a duplicate key and the document is merged instead. So re-runs and concurrent
runs never duplicate a document or a transaction. Only then is the watermark raised (``$max``):
a run that dies half way leaves the old watermark and the next run redoes the same idempotent
writes. Known limit of any id watermark: a transaction whose id was allocated before the run but
committed after it (a long-open ingest transaction) is below the new watermark and is skipped
until a rebuild.

**Rebuild** (:func:`run_rebuild`): every document again from the backup parquet (history purged
from the DB) merged with the live DB, written into ``images__rebuild`` and swapped in with one
``renameCollection`` (readers never see a half-built collection); the watermark becomes the
highest transaction loaded. Do not run a rebuild while an incremental load runs.

Only what DocumentDB has: no ``$where``, no JavaScript, no text index, plain update operators.
"""

from __future__ import annotations

import heapq
import sys
import time
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from itertools import groupby
from operator import itemgetter
from typing import Any, Literal

import pandas as pd
from pymongo import InsertOne, UpdateOne
from pymongo.collection import Collection
from pymongo.database import Database
from pymongo.errors import BulkWriteError, PyMongoError
from sqlalchemy import Connection, Engine, distinct, func, select
from tqdm import tqdm

from cxr.config import Settings
from cxr.errors import CxrError, InputError, IntegrityError
from cxr.stores import db
from cxr.stores.backup_reader import read_backup, read_reviews
from cxr.stores.catalog import Stores
from cxr.stores.lake import Lake
from cxr.stores.queries import JOINED_COLUMNS, REVIEW_ROW_COLUMNS, joined_rows, review_rows
from cxr.stores.schema import review, transaction
from cxr.stores.warehouse import IMAGES_COLLECTION as COLLECTION
from cxr.stores.watermark import REVIEWS, get_watermark, set_watermark
from cxr.warehouse.documents import (
    Reviews,
    document_from_rows,
    documents_from_rows,
    merge_updates,
    review_updates,
    reviews_from_rows,
)

Mode = Literal["incremental", "rebuild"]
MODES: tuple[Mode, ...] = ("incremental", "rebuild")
REBUILD_SUFFIX = "__rebuild"
DUPLICATE_KEY = 11000


@dataclass
class LoadReport:
    """What one ETL run did (the CLI prints :meth:`lines`, the notebook shows :meth:`frame`)."""

    mode: Mode
    watermark_before: int | None
    watermark_after: int | None
    images: int = 0  # documents built from the rows read
    transactions: int = 0  # transactions read
    inserted: int = 0  # new documents
    merged: int = 0  # existing documents sent transactions to merge
    transactions_added: int = 0  # transactions pushed into existing documents
    reviews_added: int = 0  # reviews pushed onto transactions loaded before (incremental)
    backup_rows: int = 0  # rebuild only: rows read from the backup parquet
    db_rows: int = 0  # rows read from the DB
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def documents_written(self) -> int:
        return self.inserted + self.merged

    def lines(self) -> list[str]:
        out = [f"{self.mode}: {self.images} images, {self.transactions} transactions read "
               f"({self.db_rows} DB rows" + (f", {self.backup_rows} backup rows" if self.mode == "rebuild" else "") + ")",
               f"documents written: {self.documents_written} ({self.inserted} new, {self.merged} merged, "
               f"{self.transactions_added} transactions added to existing documents, "
               f"{self.reviews_added} reviews added to loaded transactions)",
               f"watermark: {self.watermark_before} -> {self.watermark_after}",
               f"took {self.seconds:.2f} s"]
        return out + self.notes

    def frame(self) -> pd.DataFrame:
        d = asdict(self)
        d.pop("notes")
        d["documents_written"] = self.documents_written
        return pd.DataFrame({"value": pd.Series(d, dtype=object)})


# -- writing ----------------------------------------------------------------------------------
def ensure_indexes(collection: Collection) -> None:
    """The unique index on ``image_id`` (idempotent); it is what makes concurrent loads safe."""
    collection.create_index([("image_id", 1)], unique=True, name="image_id_unique")


def write_batch(collection: Collection, docs: list[dict]) -> dict[str, int]:
    """Insert the new documents and merge the others, in one unordered ``bulk_write``; return counts."""
    if not docs:
        return {"inserted": 0, "merged": 0, "transactions_added": 0}
    ids = [d["image_id"] for d in docs]
    existing = {e["image_id"] for e in collection.find({"image_id": {"$in": ids}}, {"_id": 0, "image_id": 1})}
    new = [d for d in docs if d["image_id"] not in existing]
    merge = [d for d in docs if d["image_id"] in existing]
    ops = [InsertOne(dict(d)) for d in new] + [UpdateOne(f, u) for d in merge for f, u in merge_updates(d)]
    inserted, added = len(new), 0
    try:
        result = collection.bulk_write(ops, ordered=False)
        added = result.modified_count
    except BulkWriteError as exc:
        errors = exc.details.get("writeErrors", [])
        other = [e for e in errors if e.get("code") != DUPLICATE_KEY or e["index"] >= len(new)]
        if other:
            raise CxrError(f"warehouse write failed: {other[0].get('errmsg', other[0])}".splitlines()[0]) from None
        # Another load inserted these images first: merge into its documents instead.
        lost = [new[e["index"]] for e in errors]
        inserted -= len(lost)
        added = exc.details.get("nModified", 0)
        merge += lost
        retry = [UpdateOne(f, u) for d in lost for f, u in merge_updates(d)]
        added += collection.bulk_write(retry, ordered=False).modified_count
    return {"inserted": inserted, "merged": len(merge), "transactions_added": added}


def write_documents(collection: Collection, docs: Iterable[dict], *, batch_size: int, progress: bool = False,
                    total: int | None = None, report: LoadReport) -> None:
    """Write ``docs`` in batches of ``batch_size`` (one ``bulk_write`` each), with a progress bar.

    One batch is written (in a worker thread) while the next is read and built: at most one in
    flight. Batches never share an image (the rows come grouped by image), so they are independent.
    """
    def account(batch: list[dict], counts: dict[str, int]) -> None:
        report.images += len(batch)
        report.transactions += sum(len(d["transactions"]) for d in batch)
        report.inserted += counts["inserted"]
        report.merged += counts["merged"]
        report.transactions_added += counts["transactions_added"]
        bar.update(len(batch))

    try:
        with (tqdm(total=total, unit="img", desc=f"warehouse {report.mode}", disable=not progress, file=sys.stderr) as bar,
              ThreadPoolExecutor(max_workers=1, thread_name_prefix="cxr-warehouse-write") as pool):
            pending = None
            for batch in _batched(docs, batch_size):
                if pending is not None:
                    account(pending[0], pending[1].result())
                pending = (batch, pool.submit(write_batch, collection, batch))
            if pending is not None:
                account(pending[0], pending[1].result())
    except PyMongoError as exc:  # server gone, timeout, ...: the watermark is not moved, a re-run redoes it
        raise CxrError(f"warehouse write failed: {exc}".splitlines()[0][:300]) from None


def _batched(items: Iterable[dict], n: int) -> Iterator[list[dict]]:
    batch: list[dict] = []
    for item in items:
        batch.append(item)
        if len(batch) >= n:
            yield batch
            batch = []
    if batch:
        yield batch


# -- reading the DB ---------------------------------------------------------------------------
def _window(conn: Connection, watermark: int | None) -> tuple[int | None, int]:
    """(highest transaction_id, number of images) of the transactions above ``watermark``."""
    q = select(func.max(transaction.c.transaction_id), func.count(distinct(transaction.c.image_id)))
    if watermark is not None:
        q = q.where(transaction.c.transaction_id > watermark)
    hi, images = conn.execute(q).one()
    return (None if hi is None else int(hi)), int(images)


def _check_not_behind(conn: Connection, watermark: int | None) -> None:
    """Refuse to load when the DB's ids are below the watermark: they were reused, or it is another DB."""
    if watermark is None:
        return
    top = conn.execute(select(func.max(transaction.c.transaction_id))).scalar_one()
    if top is not None and int(top) < watermark:
        raise IntegrityError(f"the DB's highest transaction_id {int(top)} is below the warehouse watermark {watermark}: "
                             "its ids were reused or it is another DB; run `cxr warehouse --rebuild`")


def _db_rows(conn: Connection, *, min_id: int | None, max_id: int, batch_size: int,
             report: LoadReport) -> Iterator[Mapping[str, Any]]:
    result = conn.execution_options(yield_per=max(1000, batch_size * 10)).execute(
        joined_rows(min_transaction_id=min_id, max_transaction_id=max_id))
    for row in result:
        report.db_rows += 1
        yield row._mapping


def _auto_progress(progress: bool | None) -> bool:
    return sys.stderr.isatty() if progress is None else progress


def _reviews(conn: Connection, **bounds: int | None) -> Reviews:
    return reviews_from_rows(r._mapping for r in conn.execute(review_rows(**bounds)))


def _top_review(conn: Connection) -> int | None:
    top = conn.execute(select(func.max(review.c.review_id))).scalar()
    return None if top is None else int(top)


def load_late_reviews(conn: Connection, collection: Collection, *, transaction_watermark: int | None,
                      review_watermark: int | None, top: int) -> int:
    """Push reviews newer than ``review_watermark`` onto transactions loaded before (at or below the
    transaction watermark); the number of reviews added."""
    if transaction_watermark is None:
        return 0
    late = _reviews(conn, min_review_id=review_watermark, max_review_id=top, max_transaction_id=transaction_watermark)
    if not late:
        return 0
    image_of = dict(conn.execute(select(transaction.c.transaction_id, transaction.c.image_id)
                                 .where(transaction.c.transaction_id.in_(list(late)))).all())
    ops = [UpdateOne(f, u) for f, u in review_updates(image_of, late)]
    try:
        return collection.bulk_write(ops, ordered=False).modified_count
    except PyMongoError as exc:
        raise CxrError(f"warehouse write failed: {exc}".splitlines()[0][:300]) from None


# -- the jobs ---------------------------------------------------------------------------------
def run_incremental(settings: Settings | None = None, *, stores: Stores | None = None, engine: Engine | None = None,
                    database: Database | None = None, batch_size: int | None = None,
                    progress: bool | None = None) -> LoadReport:
    """Load the transactions above the watermark; return what was done (see the module docstring)."""
    stores = stores or Stores.open(settings, engine=engine, warehouse=database)
    size = batch_size or stores.settings.warehouse_batch_size
    started = time.perf_counter()
    database = stores.warehouse
    collection = database[COLLECTION]
    ensure_indexes(collection)
    before = get_watermark(database)
    reviews_before = get_watermark(database, REVIEWS)
    report = LoadReport("incremental", before, before)
    with db.reading(), stores.engine.connect() as conn:
        _check_not_behind(conn, before)
        hi, n_images = _window(conn, before)
        top_review = _top_review(conn)
        if hi is not None:
            reviews = _reviews(conn, min_transaction_id=before, max_transaction_id=hi, max_review_id=top_review)
            rows = _db_rows(conn, min_id=before, max_id=hi, batch_size=size, report=report)
            write_documents(collection, documents_from_rows(rows, reviews), batch_size=size,
                            progress=_auto_progress(progress), total=n_images, report=report)
        if top_review is not None:
            report.reviews_added = load_late_reviews(conn, collection, transaction_watermark=before,
                                                     review_watermark=reviews_before, top=top_review)
    if top_review is not None:
        set_watermark(database, top_review, state=REVIEWS)
    if hi is not None:
        report.watermark_after = set_watermark(database, hi)
    else:
        report.notes.append("nothing new above the watermark")
    report.seconds = time.perf_counter() - started
    return report


def backup_rows(frame: pd.DataFrame) -> Iterator[dict[str, Any]]:
    """The backup frame's rows as dicts, in its order (``read_backup`` sorts by image, transaction, box)."""
    cols = list(JOINED_COLUMNS)
    for values in frame[cols].itertuples(index=False, name=None):
        yield dict(zip(cols, values))


def merged_documents(backup: Iterable[Mapping[str, Any]], db_rows: Iterable[Mapping[str, Any]],
                     reviews: Reviews | None = None) -> Iterator[dict]:
    """One document per image from two row streams each sorted by ``image_id`` (pure).

    A row present in both (a transaction backed up but not purged yet) counts once; the DB's copy
    wins. Streams: one image's rows in memory at a time.
    """
    stream = heapq.merge(backup, db_rows, key=itemgetter("image_id"))  # stable: backup rows first, DB rows override
    for _, rows in groupby(stream, key=itemgetter("image_id")):
        yield document_from_rows(list(rows), reviews)


def run_rebuild(settings: Settings | None = None, *, stores: Stores | None = None, engine: Engine | None = None,
                database: Database | None = None, lake: Lake | None = None, batch_size: int | None = None,
                progress: bool | None = None) -> LoadReport:
    """Rebuild every document from the backup parquet plus the live DB, then swap it in."""
    stores = stores or Stores.open(settings, engine=engine, lake=lake, warehouse=database)
    size = batch_size or stores.settings.warehouse_batch_size
    started = time.perf_counter()
    database = stores.warehouse
    before = get_watermark(database)
    report = LoadReport("rebuild", before, before)
    frame = read_backup(stores.lake)
    backed_reviews = read_reviews(stores.lake)
    report.backup_rows = len(frame)
    staging = database[COLLECTION + REBUILD_SUFFIX]
    staging.drop()
    ensure_indexes(staging)
    with db.reading(), stores.engine.connect() as conn:
        hi, _ = _window(conn, None)
        backup_hi = int(frame["transaction_id"].max()) if len(frame) else None
        top = max((v for v in (hi, backup_hi) if v is not None), default=None)
        total = len(set(frame["image_id"].astype("int64").tolist()) | set(_db_image_ids(conn)))
        top_review = _top_review(conn)
        review_list = [dict(zip(REVIEW_ROW_COLUMNS, v)) for v in backed_reviews[list(REVIEW_ROW_COLUMNS)]
                       .itertuples(index=False, name=None)]
        review_list += [dict(r._mapping) for r in conn.execute(review_rows(max_review_id=top_review))]
        reviews = reviews_from_rows(review_list)
        live = _db_rows(conn, min_id=None, max_id=hi, batch_size=size, report=report) if hi is not None else iter(())
        write_documents(staging, merged_documents(backup_rows(frame), live, reviews), batch_size=size,
                        progress=_auto_progress(progress), total=total, report=report)
    staging.rename(COLLECTION, dropTarget=True)
    review_ids = [rv["review_id"] for items in reviews.values() for rv in items]
    if review_ids:
        set_watermark(database, max(review_ids), monotonic=False, state=REVIEWS)
    if top is not None:
        report.watermark_after = set_watermark(database, top, monotonic=False)
    report.seconds = time.perf_counter() - started
    return report


def _db_image_ids(conn: Connection) -> list[int]:
    return [int(r[0]) for r in conn.execute(select(transaction.c.image_id).distinct())]


def run(mode: str = "incremental", settings: Settings | None = None, *, stores: Stores | None = None,
        batch_size: int | None = None, progress: bool | None = None) -> LoadReport:
    """The notebook's and the CLI's entry point: ``mode`` is ``incremental`` or ``rebuild``."""
    if mode == "incremental":
        return run_incremental(settings, stores=stores, batch_size=batch_size, progress=progress)
    if mode == "rebuild":
        return run_rebuild(settings, stores=stores, batch_size=batch_size, progress=progress)
    raise InputError(f"unknown mode {mode!r}: use {' or '.join(MODES)}")


def sample_document(database: Database, image_id: int | None = None) -> dict | None:
    """One stored document (the newest image, or ``image_id``), without ``_id``, for display."""
    coll = database[COLLECTION]
    if image_id is not None:
        return coll.find_one({"image_id": int(image_id)}, {"_id": 0})
    return next(iter(coll.find({}, {"_id": 0}).sort("image_id", -1).limit(1)), None)
