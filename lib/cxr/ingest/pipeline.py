"""Stage 2: store an upload and its prediction, atomically and idempotently; batch ingest.

The store sequence (:func:`store_prediction`):

1. the object key is content-addressed: ``images/<sha[:2]>/<sha>.<ext>`` by the sha256 of
   the stored bytes (de-identified DICOM or the PNG/JPEG as uploaded), plus
   ``renditions/<sha[:2]>/<sha>.png``;
2. both objects are put. A put of the same bytes under the same key is idempotent, and
   it is always done (never skipped because the key exists) so the object's age is fresh
   and ``cxr lake gc --older-than`` cannot sweep it while this ingest is under way;
3. ONE DB transaction inserts the ``image`` row if the sha256 is new (race-safe: the unique
   sha256 index decides, a loser re-selects the winner's row), then the ``transaction`` row
   and its ``pred_bounding_box`` rows.

A crash between any two steps leaves at most an object that no row references (harmless;
swept by ``cxr lake gc``), never a row without its object and never half a prediction.
Re-running completes the work; re-running a batch with the same ``run_id`` does not add a
second transaction for an image already stored under that run (``resume=True``).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from sqlalchemy import Connection, Engine, insert, select
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import DBAPIError, IntegrityError
from tqdm import tqdm

from cxr.auth.audit import Actor, append
from cxr.config import Settings
from cxr.errors import InputError
from cxr.ingest import names, views
from cxr.ingest.decode import DecodedUpload, decode_upload
from cxr.model.postprocess import Detections, RawOutput
from cxr.model.predict import Predictor, load_predictor
from cxr.stores import layout
from cxr.stores.catalog import Stores
from cxr.stores.lake import Lake
from cxr.stores.schema import Source, image, pred_bounding_box, transaction

log = logging.getLogger("cxr.ingest")

#: The store sequence, in order; :func:`checkpoint` is called before each step.
STEPS = ("put_image", "put_rendition", "begin", "insert_image", "insert_transaction", "insert_boxes", "commit")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".jpe", ".dcm", ".dicom", "")
_RETRYABLE_MYSQL = {1205, 1213}  # lock wait timeout, deadlock: the whole transaction was rolled back
MAX_ATTEMPTS = 6


def checkpoint(step: str) -> None:
    """Fault-injection point between store steps (a no-op; tests replace it to simulate crashes)."""


@dataclass(frozen=True)
class StoredResult:
    image_id: int
    transaction_id: int
    sha256: str
    image_key: str
    created_image: bool
    rendition_key: str = ""
    n_boxes: int = 0
    created_transaction: bool = True


def utcnow() -> datetime:
    """UTC as a naive datetime (the DB's DATETIME columns hold UTC)."""
    return datetime.now(timezone.utc).replace(tzinfo=None)


def store_prediction(engine: Engine, lake: Lake, upload: DecodedUpload, detections: Detections | None, *,
                     score_thr: float, nms_thr: float, model_version: str, run_id: str,
                     original_name: str | None = None, resume: bool = False, source: Source | None = None,
                     skip_reason: str | None = None, actor: Actor | None = None) -> StoredResult:
    """Put the upload's objects in the lake, then record image + transaction + boxes in one DB transaction.

    The stored name is the upload's masked name (``decode_upload`` removed the identifiers);
    an ``original_name`` given instead is masked the same way (digit runs). ``detections`` None
    with a ``skip_reason`` records a transaction for which the detector did not run. The same DB
    transaction appends the ``upload`` audit event of ``actor`` (default: the operator running
    this process); a signed-in ``actor`` with a ``user_id`` is the transaction's ``user_id``.
    """
    sha = upload.sha256
    checkpoint("put_image")
    lake.put(upload.image_key, upload.stored_bytes, content_type=upload.content_type)
    checkpoint("put_rendition")
    lake.put(upload.rendition_key, upload.rendition_png, content_type="image/png")
    boxes = detections.records() if detections is not None else []
    name = names.mask_name(original_name) if original_name is not None else (upload.name or None)
    folder, image_file = layout.split_key(upload.image_key)
    image_row = {
        "bucket": lake.bucket,
        "folder": folder,
        "image_file": image_file,
        "sha256": sha,
        "width": int(upload.width),
        "height": int(upload.height),
        "source_format": upload.source_format,
        "original_name": name[:255] if name else None,
        "study_key": upload.study_key,
        "patient_key": upload.patient_key,
        "upload_key": upload.upload_key,
        "intensity_mean": upload.intensity_mean,
        "intensity_std": upload.intensity_std,
    }
    actor = actor or Actor.operator()
    transaction_row = {"cs_thr": float(score_thr), "nms_thr": float(nms_thr), "model_version": str(model_version)[:64],
                       "run_id": str(run_id)[:64], "source": source, "skip_reason": skip_reason[:255] if skip_reason else None,
                       "user_id": actor.user_id}
    for attempt in range(1, MAX_ATTEMPTS + 1):
        try:
            image_id, txn_id, created, new_txn = _record(engine, image_row, transaction_row, boxes, resume=resume,
                                                         actor=actor)
            break
        except DBAPIError as exc:  # deadlock / lock timeout / SQLite busy: the transaction was rolled back
            if attempt == MAX_ATTEMPTS or not _retryable(exc):
                raise
            time.sleep(0.02 * 2**attempt)
    log.info("stored image_id=%s transaction_id=%s sha256=%s boxes=%d new_image=%s",
             image_id, txn_id, sha[:12], len(boxes), created)
    return StoredResult(image_id=image_id, transaction_id=txn_id, sha256=sha, image_key=upload.image_key,
                        created_image=created, rendition_key=upload.rendition_key, n_boxes=len(boxes),
                        created_transaction=new_txn)


def _retryable(exc: DBAPIError) -> bool:
    orig = getattr(exc, "orig", None)
    code = orig.args[0] if orig is not None and getattr(orig, "args", None) else None
    if isinstance(code, int) and code in _RETRYABLE_MYSQL:
        return True
    return "database is locked" in str(orig or exc)


def _insert_image(conn: Connection, image_row: dict[str, object]) -> tuple[int, bool]:
    """(image_id, created): the row with this sha256, inserted unless it exists (race-safe)."""
    by_sha = select(image.c.image_id).where(image.c.sha256 == image_row["sha256"])
    image_id = conn.execute(by_sha).scalar()
    if image_id is not None:
        return int(image_id), False
    if conn.dialect.name == "sqlite":
        # pysqlite's SAVEPOINT would commit the outer transaction on RELEASE; SQLite has
        # ON CONFLICT instead (and serializes writers anyway).
        done = conn.execute(sqlite_insert(image).values(**image_row, created_at=utcnow())
                            .on_conflict_do_nothing(index_elements=["sha256"]))
        return int(conn.execute(by_sha).scalar_one()), done.rowcount == 1
    try:
        with conn.begin_nested():  # a SAVEPOINT: a duplicate key undoes only this insert
            return int(conn.execute(insert(image).values(**image_row, created_at=utcnow())).inserted_primary_key[0]), True
    except IntegrityError:
        # Another ingester stored the same bytes first: use its row (a locking read sees the
        # latest committed row, not this transaction's snapshot).
        return int(conn.execute(by_sha.with_for_update(read=True)).scalar_one()), False


def _record(engine: Engine, image_row: dict[str, object], transaction_row: dict[str, object], boxes: list[dict], *,
            resume: bool, actor: Actor) -> tuple[int, int, bool, bool]:
    checkpoint("begin")
    with engine.begin() as conn:
        checkpoint("insert_image")
        image_id, created = _insert_image(conn, image_row)
        if resume:
            done = conn.execute(
                select(transaction.c.transaction_id)
                .where(transaction.c.image_id == image_id, transaction.c.run_id == transaction_row["run_id"])
                .order_by(transaction.c.transaction_id).limit(1)
            ).scalar()
            if done is not None:
                return int(image_id), int(done), created, False
        checkpoint("insert_transaction")
        txn_id = conn.execute(insert(transaction).values(image_id=image_id, time=utcnow(), **transaction_row)
                              ).inserted_primary_key[0]
        checkpoint("insert_boxes")
        if boxes:
            conn.execute(insert(pred_bounding_box), [
                {
                    "transaction_id": txn_id, "pred_class": str(b["class_name"])[:64], "class_id": int(b["class_id"]),
                    "pred_cs": float(b["score"]), "x_min": float(b["x_min"]), "y_min": float(b["y_min"]),
                    "x_max": float(b["x_max"]), "y_max": float(b["y_max"]),
                }
                for b in boxes
            ])
        append(conn, actor, "upload", object_type="transaction", object_ids=[txn_id],
               detail={"image_id": int(image_id), "new_image": created, "boxes": len(boxes),
                       "source": transaction_row["source"]})
        checkpoint("commit")
    return int(image_id), int(txn_id), created, True


# -- batches -----------------------------------------------------------------------------------

@dataclass
class Rejected:
    path: str
    reason: str


@dataclass
class IngestSummary:
    run_id: str
    model_version: str
    score_thr: float
    nms_thr: float
    stored: list[dict] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)
    warnings: list[dict] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.rejected

    def as_dict(self) -> dict[str, object]:
        d = asdict(self)
        d["n_stored"] = len(self.stored)
        d["n_rejected"] = len(self.rejected)
        d["n_new_images"] = sum(1 for s in self.stored if s["created_image"])
        return d


def expand_paths(paths: Iterable[str | Path]) -> list[Path]:
    """Files named directly, plus image-like files (by extension, or none) found under directories."""
    out: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            for f in sorted(p.rglob("*")):
                if f.is_file() and not any(part.startswith(".") for part in f.relative_to(p).parts) \
                        and f.suffix.lower() in IMAGE_EXTENSIONS:
                    out.append(f)
        else:
            out.append(p)
    return out


def read_upload(path: Path, settings: Settings) -> tuple[str, bytes]:
    """The file's name and bytes; refuses missing and oversized files without reading them."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise InputError("no such file") from None
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror}") from None
    if not path.is_file():
        raise InputError("not a regular file")
    if size > settings.max_upload_bytes:
        raise InputError(f"file is {size:,} bytes, more than the {settings.max_upload_bytes:,}-byte limit (CXR_MAX_UPLOAD_BYTES)")
    try:
        return path.name, path.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror}") from None


def stored_image_id(engine: Engine, upload_key: str) -> int | None:
    """The ``image_id`` stored for an upload with this keyed hash of its bytes as uploaded, else None.

    The image row and its transaction are written in one DB transaction, so a row found here has
    its prediction: a backfill that finds one skips the file without decoding it.
    """
    with engine.connect() as conn:
        found = conn.execute(select(image.c.image_id).where(image.c.upload_key == upload_key).limit(1)).scalar()
    return int(found) if found is not None else None


@dataclass
class Detected:
    """A decoded upload after the detector: its raw output and detections, or why the model did not run."""

    upload: DecodedUpload
    raw: RawOutput | None = None
    detections: Detections | None = None
    inference_s: float = 0.0
    skip_reason: str | None = None


def detect(upload: DecodedUpload, predictor: Predictor, *, score_thr: float, nms_thr: float) -> Detected:
    """The one per-image detection step, for every source (files, the dashboard, the DICOM network,
    the backfill): the model runs once; thresholds can be re-applied to ``raw`` later.

    An image the detector must not read (a lateral view, :mod:`cxr.ingest.views`) is returned
    without running the model, with its ``skip_reason``; it is stored all the same."""
    reason = views.skip_reason(upload.view_position, upload.view_code)
    if reason is not None:
        return Detected(upload, skip_reason=reason)
    t0 = time.perf_counter()
    raw = predictor.infer(upload.array)
    seconds = time.perf_counter() - t0
    return Detected(upload, raw, predictor.postprocess(raw, score_thr=score_thr, nms_thr=nms_thr), seconds)


def store_detected(stores: Stores, d: Detected, *, score_thr: float, nms_thr: float, model_version: str,
                   run_id: str, source: Source, resume: bool = False, actor: Actor | None = None) -> StoredResult:
    """The one per-image store step after :func:`detect` (see :func:`store_prediction`)."""
    return store_prediction(stores.engine, stores.lake, d.upload, d.detections, score_thr=score_thr, nms_thr=nms_thr,
                            model_version=model_version, run_id=run_id, resume=resume, source=source,
                            skip_reason=d.skip_reason, actor=actor)


@dataclass
class Prediction:
    """One file's way through decode and detection: what was detected, or the reason it was refused."""

    path: Path
    display_path: str  # ``path`` with identifiers removed and digit runs masked: what is logged and shown
    detected: Detected | None = None
    reason: str | None = None

    @property
    def upload(self) -> DecodedUpload | None:
        return self.detected.upload if self.detected else None

    @property
    def detections(self) -> Detections | None:
        return self.detected.detections if self.detected else None

    @property
    def inference_s(self) -> float:
        return self.detected.inference_s if self.detected else 0.0


def iter_predictions(paths: Iterable[Path], settings: Settings, predictor: Predictor, *, score_thr: float,
                     nms_thr: float) -> Iterator[Prediction]:
    """Decode, validate and detect each file (the model runs once per file); refusals carry their reason."""
    for path in paths:
        try:
            name, data = read_upload(path, settings)
            upload = decode_upload(name, data, settings)
        except InputError as exc:
            yield Prediction(path, names.mask_path(path), reason=str(exc))
            continue
        detected = detect(upload, predictor, score_thr=score_thr, nms_thr=nms_thr)
        yield Prediction(path, names.mask_path(path.with_name(upload.name)), detected)


def ingest_files(paths: Iterable[str | Path], settings: Settings | None = None, *, score_thr: float | None = None,
                 nms_thr: float | None = None, run_id: str | None = None, predictor: Predictor | None = None,
                 stores: Stores | None = None, engine: Engine | None = None, lake: Lake | None = None,
                 progress: bool | None = None,
                 on_reject: Callable[[Rejected], None] | None = None) -> IngestSummary:
    """Stage 2 for a batch: decode, detect and store every file; collect the rejected ones.

    A file that is not a usable image is rejected with its reason and the batch goes on;
    a store that fails (DB or lake down) stops the batch with its error. Passing the
    ``run_id`` of an interrupted batch resumes it without adding duplicate transactions.
    ``stores`` (or ``engine``/``lake`` handed in) default to the stores the settings name.
    """
    stores = stores or Stores.open(settings, engine=engine, lake=lake)
    settings = stores.settings
    score_thr = settings.score_thr if score_thr is None else score_thr
    nms_thr = settings.nms_thr if nms_thr is None else nms_thr
    resume = run_id is not None
    run_id = run_id or f"ingest-{utcnow():%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"
    predictor = predictor or load_predictor(settings)
    files = expand_paths(paths)
    summary = IngestSummary(run_id=run_id, model_version=str(predictor.model_version),
                            score_thr=float(score_thr), nms_thr=float(nms_thr))
    t0 = time.perf_counter()
    bar = tqdm(total=len(files), unit="img", desc="ingest", disable=None if progress is None else not progress)
    try:
        for p in iter_predictions(files, settings, predictor, score_thr=score_thr, nms_thr=nms_thr):
            bar.update(1)
            if p.detected is None:
                rej = Rejected(p.display_path, p.reason or "refused")
                summary.rejected.append(rej)
                if on_reject:
                    with tqdm.external_write_mode():  # the line goes above the progress bar
                        on_reject(rej)
                continue
            res = store_detected(stores, p.detected, score_thr=score_thr, nms_thr=nms_thr,
                                 model_version=predictor.model_version, run_id=run_id, resume=resume, source="ingest")
            summary.stored.append({"path": p.display_path, **asdict(res), "inference_s": round(p.inference_s, 4)})
            summary.warnings.extend({"path": p.display_path, "warning": w} for w in p.detected.upload.warnings)
            if p.detected.skip_reason:
                summary.warnings.append({"path": p.display_path, "warning": f"not run: {p.detected.skip_reason}"})
    finally:
        bar.close()
    summary.seconds = round(time.perf_counter() - t0, 3)
    return summary
