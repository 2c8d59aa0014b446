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
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from operator import itemgetter

from cxr.errors import ConfigError, CxrError, IntegrityError
from cxr.warehouse.documents import document_from_rows, documents_from_rows, merge_updates
from cxr.warehouse.state import get_watermark, set_watermark

COLLECTION = "images"
REBUILD_SUFFIX = "__rebuild"
DUPLICATE_KEY = 11000


@dataclass
class LoadReport:
    """What one ETL run did (the CLI prints :meth:`lines`, the notebook shows :meth:`frame`)."""

    mode: str  # "incremental" | "rebuild"
    watermark_before: int | None
    watermark_after: int | None
    images: int = 0  # documents built from the rows read
    transactions: int = 0  # transactions read
    inserted: int = 0  # new documents
    merged: int = 0  # existing documents sent transactions to merge
    transactions_added: int = 0  # transactions pushed into existing documents
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
               f"{self.transactions_added} transactions added to existing documents)",
               f"watermark: {self.watermark_before} -> {self.watermark_after}",
               f"took {self.seconds:.2f} s"]
        return out + self.notes

    def frame(self):  # noqa: ANN201 - pandas DataFrame for the notebook
        import pandas as pd

        d = asdict(self)
        d.pop("notes")
        d["documents_written"] = self.documents_written
        return pd.DataFrame({"value": pd.Series(d, dtype=object)})


# -- writing ----------------------------------------------------------------------------------
def ensure_indexes(collection) -> None:  # noqa: ANN001 - pymongo Collection
    """The unique index on ``image_id`` (idempotent); it is what makes concurrent loads safe."""
    collection.create_index([("image_id", 1)], unique=True, name="image_id_unique")


def write_batch(collection, docs: list[dict]) -> dict[str, int]:  # noqa: ANN001
    """Insert the new documents and merge the others, in one unordered ``bulk_write``; return counts."""
    from pymongo import InsertOne, UpdateOne
    from pymongo.errors import BulkWriteError

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


def write_documents(collection, docs: Iterable[dict], *, batch_size: int, progress: bool = False,  # noqa: ANN001
                    total: int | None = None, report: LoadReport) -> None:
    """Write ``docs`` in batches of ``batch_size`` (one ``bulk_write`` each), with a progress bar.

    One batch is written (in a worker thread) while the next is read and built: at most one in
    flight. Batches never share an image (the rows come grouped by image), so they are independent.
    """
    from concurrent.futures import ThreadPoolExecutor

    from tqdm import tqdm

    def account(batch: list[dict], counts: dict[str, int]) -> None:
        report.images += len(batch)
        report.transactions += sum(len(d["transactions"]) for d in batch)
        report.inserted += counts["inserted"]
        report.merged += counts["merged"]
        report.transactions_added += counts["transactions_added"]
        bar.update(len(batch))

    from pymongo.errors import PyMongoError

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
def _window(conn, watermark: int | None) -> tuple[int | None, int]:  # noqa: ANN001
    """(highest transaction_id, number of images) of the transactions above ``watermark``."""
    from sqlalchemy import distinct, func, select

    from cxr.stores.schema import transaction

    q = select(func.max(transaction.c.transaction_id), func.count(distinct(transaction.c.image_id)))
    if watermark is not None:
        q = q.where(transaction.c.transaction_id > watermark)
    hi, images = conn.execute(q).one()
    return (None if hi is None else int(hi)), int(images)


def _check_not_behind(conn, watermark: int | None) -> None:  # noqa: ANN001
    """Refuse to load when the DB's ids are below the watermark: they were reused, or it is another DB."""
    from sqlalchemy import func, select

    from cxr.stores.schema import transaction

    if watermark is None:
        return
    top = conn.execute(select(func.max(transaction.c.transaction_id))).scalar_one()
    if top is not None and int(top) < watermark:
        raise IntegrityError(f"the DB's highest transaction_id {int(top)} is below the warehouse watermark {watermark}: "
                             "its ids were reused or it is another DB; run `cxr warehouse --rebuild`")


def _counting(rows: Iterable, report: LoadReport) -> Iterator[Mapping]:
    for row in rows:
        report.db_rows += 1
        yield row._mapping


def _db_rows(conn, *, min_id: int | None, max_id: int, batch_size: int, report: LoadReport) -> Iterator[Mapping]:  # noqa: ANN001
    from cxr.stores.queries import joined_rows

    result = conn.execution_options(yield_per=max(1000, batch_size * 10)).execute(
        joined_rows(min_transaction_id=min_id, max_transaction_id=max_id))
    return _counting(result, report)


@contextmanager
def _reading_db() -> Iterator[None]:
    """DB errors as one line naming CXR_DB_URL (an unmigrated DB says to run `cxr db upgrade`)."""
    from sqlalchemy.exc import OperationalError, ProgrammingError

    from cxr.stores.db import describe_error

    try:
        yield
    except (OperationalError, ProgrammingError) as exc:
        why = describe_error(exc)
        hint = " (no cxr tables: run `cxr db upgrade`)" if "no such table" in why or "doesn't exist" in why else ""
        raise ConfigError(f"reading the DB failed: {why}{hint}", setting="CXR_DB_URL") from None


def _auto_progress(progress: bool | None) -> bool:
    return sys.stderr.isatty() if progress is None else progress


def _open(settings, engine, database):  # noqa: ANN001, ANN202
    from cxr.config import get_settings

    s = settings or get_settings()
    if engine is None:
        from cxr.stores.db import engine_from_settings

        engine = engine_from_settings(s)
    if database is None:
        from cxr.stores.warehouse import database_from_settings

        database = database_from_settings(s)
    return s, engine, database


# -- the jobs ---------------------------------------------------------------------------------
def run_incremental(settings=None, *, engine=None, database=None, batch_size: int | None = None,  # noqa: ANN001
                    progress: bool | None = None) -> LoadReport:
    """Load the transactions above the watermark; return what was done (see the module docstring)."""
    s, engine, database = _open(settings, engine, database)
    size = batch_size or s.warehouse_batch_size
    started = time.perf_counter()
    collection = database[COLLECTION]
    ensure_indexes(collection)
    before = get_watermark(database)
    report = LoadReport("incremental", before, before)
    with _reading_db(), engine.connect() as conn:
        _check_not_behind(conn, before)
        hi, n_images = _window(conn, before)
        if hi is not None:
            rows = _db_rows(conn, min_id=before, max_id=hi, batch_size=size, report=report)
            write_documents(collection, documents_from_rows(rows), batch_size=size,
                            progress=_auto_progress(progress), total=n_images, report=report)
    if hi is not None:
        report.watermark_after = set_watermark(database, hi)
    else:
        report.notes.append("nothing new above the watermark")
    report.seconds = time.perf_counter() - started
    return report


def backup_rows(frame) -> Iterator[dict]:  # noqa: ANN001 - pandas DataFrame with JOINED_COLUMNS
    """The backup frame's rows as dicts, in its order (``read_backup`` sorts by image, transaction, box)."""
    from cxr.stores.queries import JOINED_COLUMNS

    cols = list(JOINED_COLUMNS)
    for values in frame[cols].itertuples(index=False, name=None):
        yield dict(zip(cols, values))


def merged_documents(backup: Iterable[Mapping], db: Iterable[Mapping]) -> Iterator[dict]:
    """One document per image from two row streams each sorted by ``image_id`` (pure).

    A row present in both (a transaction backed up but not purged yet) counts once; the DB's copy
    wins. Streams: one image's rows in memory at a time.
    """
    from itertools import groupby

    stream = heapq.merge(backup, db, key=itemgetter("image_id"))  # stable: backup rows first, DB rows override
    for _, rows in groupby(stream, key=itemgetter("image_id")):
        yield document_from_rows(list(rows))


def run_rebuild(settings=None, *, engine=None, database=None, lake=None, batch_size: int | None = None,  # noqa: ANN001
                progress: bool | None = None) -> LoadReport:
    """Rebuild every document from the backup parquet plus the live DB, then swap it in."""
    from cxr.backup.restore import read_backup

    s, engine, database = _open(settings, engine, database)
    if lake is None:
        from cxr.stores.lake import lake_from_settings

        lake = lake_from_settings(s)
    size = batch_size or s.warehouse_batch_size
    started = time.perf_counter()
    before = get_watermark(database)
    report = LoadReport("rebuild", before, before)
    frame = read_backup(lake, s)
    report.backup_rows = len(frame)
    staging = database[COLLECTION + REBUILD_SUFFIX]
    staging.drop()
    ensure_indexes(staging)
    with _reading_db(), engine.connect() as conn:
        hi, _ = _window(conn, None)
        backup_hi = int(frame["transaction_id"].max()) if len(frame) else None
        top = max((v for v in (hi, backup_hi) if v is not None), default=None)
        total = len(set(frame["image_id"].astype("int64").tolist()) | set(_db_image_ids(conn)))
        db = _db_rows(conn, min_id=None, max_id=hi, batch_size=size, report=report) if hi is not None else iter(())
        write_documents(staging, merged_documents(backup_rows(frame), db), batch_size=size,
                        progress=_auto_progress(progress), total=total, report=report)
    staging.rename(COLLECTION, dropTarget=True)
    if top is not None:
        report.watermark_after = set_watermark(database, top, monotonic=False)
    report.seconds = time.perf_counter() - started
    return report


def _db_image_ids(conn) -> list[int]:  # noqa: ANN001
    from sqlalchemy import select

    from cxr.stores.schema import transaction

    return [int(r[0]) for r in conn.execute(select(transaction.c.image_id).distinct())]


def run(mode: str = "incremental", settings=None, **kwargs) -> LoadReport:  # noqa: ANN001, ANN003
    """The notebook's entry point: ``mode`` is ``incremental`` or ``rebuild``."""
    from cxr.errors import InputError

    if mode == "incremental":
        return run_incremental(settings, **kwargs)
    if mode == "rebuild":
        return run_rebuild(settings, **kwargs)
    raise InputError(f"unknown mode {mode!r}: use incremental or rebuild")


def sample_document(database, image_id: int | None = None) -> dict | None:  # noqa: ANN001
    """One stored document (the newest image, or ``image_id``), without ``_id``, for display."""
    coll = database[COLLECTION]
    if image_id is not None:
        return coll.find_one({"image_id": int(image_id)}, {"_id": 0})
    return next(iter(coll.find({}, {"_id": 0}).sort("image_id", -1).limit(1)), None)
