"""What one Spark task of a backfill does with its slice of the listing (``mapPartitions``).

A task opens its own :class:`~cxr.stores.catalog.Stores`, its source and its predictor once, then
runs every file through **ingest's per-file path**, the one ``cxr ingest`` runs:
:func:`~cxr.ingest.pipeline.read_upload` (or the S3 source's read),
:func:`~cxr.ingest.decode.decode_upload`, :func:`~cxr.ingest.pipeline.detect` and
:func:`~cxr.ingest.pipeline.store_detected` with ``source="backfill"``.

Before decoding, a file whose keyed upload hash (``image.upload_key``) is already in the DB is
skipped: its image and prediction were stored by an earlier run, an interrupted one, or any other
ingest. That makes a re-run cheap (read + hash + one indexed lookup per file) and, with the
content-addressed lake keys, the unique ``sha256`` and ``resume`` by ``run_id``, idempotent.
A file that is not a usable image is *refused* with its reason and the task goes on; a store that
fails (DB or lake down) fails the task, which Spark retries, and then the job.

Nothing here knows Spark: :func:`run_partition` maps an iterator of files to one
:class:`PartitionResult`, so it is tested as a plain function.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from cxr.backfill.source import Source, SourceFile, open_source
from cxr.config import Settings
from cxr.dicom.deid import keyed_hash, load_key
from cxr.errors import InputError
from cxr.ingest.decode import decode_upload
from cxr.ingest.pipeline import detect, store_detected, stored_image_id
from cxr.model.predict import Predictor, load_predictor
from cxr.stores.catalog import Stores


@dataclass(frozen=True)
class TaskSpec:
    """What every task of one run needs (pickled to the executors)."""

    source: str
    settings: Settings  # with the driver's de-identification key and the task's decode threads
    run_id: str
    score_thr: float
    nms_thr: float
    model_dir: str  # a local folder, or the name under which the driver shipped it (SparkFiles)
    threads: int = 1  # inference and decode threads per task
    shipped_model: bool = False


@dataclass
class Refusal:
    location: str  # identifiers removed, digit runs masked
    reason: str
    bytes: int


@dataclass
class PartitionResult:
    """Counts and refusals of one partition (what a task sends back to the driver)."""

    files: int = 0
    stored: int = 0
    new_images: int = 0
    skipped: int = 0
    refused: list[Refusal] = field(default_factory=list)
    read_s: float = 0.0
    decode_s: float = 0.0
    inference_s: float = 0.0
    store_s: float = 0.0
    setup_s: float = 0.0
    seconds: float = 0.0

    def merge(self, other: PartitionResult) -> PartitionResult:
        for name in ("files", "stored", "new_images", "skipped", "read_s", "decode_s", "inference_s", "store_s",
                     "setup_s", "seconds"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.refused.extend(other.refused)
        return self


def _predictor(spec: TaskSpec) -> Predictor:
    model_dir = spec.model_dir
    if spec.shipped_model:
        from pyspark import SparkFiles  # only inside a Spark task that was shipped the model

        model_dir = SparkFiles.get(spec.model_dir)
    return load_predictor(spec.settings, model_dir=Path(model_dir), threads=spec.threads)  # cached per process


def run_partition(files: Iterable[SourceFile], spec: TaskSpec, *, stores: Stores | None = None,
                  predictor: Predictor | None = None,
                  on_file: Callable[[SourceFile, str], None] | None = None) -> PartitionResult:
    """Backfill ``files`` (one partition); ``on_file(file, status)`` sees each outcome (tests, progress)."""
    t0 = time.perf_counter()
    settings = spec.settings
    opened_here = stores is None
    stores = stores or Stores.open(settings)
    src = open_source(spec.source, settings)
    predictor = predictor or _predictor(spec)
    key = load_key(settings)
    out = PartitionResult(setup_s=time.perf_counter() - t0)
    try:
        for f in files:
            out.files += 1
            status = _one_file(f, src, spec, stores, predictor, key, out)
            if on_file is not None:
                on_file(f, status)
    finally:
        if opened_here:
            stores.close()
    out.seconds = time.perf_counter() - t0
    return out


def _one_file(f: SourceFile, src: Source, spec: TaskSpec, stores: Stores, predictor: Predictor, key: bytes,
              out: PartitionResult) -> str:
    """One file through ingest's per-file path; returns stored | skipped | refused."""
    t = time.perf_counter()
    try:
        name, data = src.read(f, spec.settings)
    except InputError as exc:
        out.refused.append(Refusal(f.display, str(exc), f.size))
        return "refused"
    upload_key = keyed_hash(key, "upload", data)
    done = stored_image_id(stores.engine, upload_key) is not None
    out.read_s += (t1 := time.perf_counter()) - t
    if done:
        out.skipped += 1
        return "skipped"
    try:
        upload = decode_upload(name, data, spec.settings)
    except InputError as exc:
        out.refused.append(Refusal(f.display, str(exc), len(data)))
        return "refused"
    out.decode_s += (t2 := time.perf_counter()) - t1
    detected = detect(upload, predictor, score_thr=spec.score_thr, nms_thr=spec.nms_thr)
    out.inference_s += (t3 := time.perf_counter()) - t2
    res = store_detected(stores, detected, score_thr=spec.score_thr, nms_thr=spec.nms_thr,
                         model_version=predictor.model_version, run_id=spec.run_id, source="backfill", resume=True)
    out.store_s += time.perf_counter() - t3
    out.stored += int(res.created_transaction)
    out.new_images += int(res.created_image)
    return "stored"
