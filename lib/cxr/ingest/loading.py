"""Lake loading: stage 2 from a drop (a folder, or ``s3://bucket/prefix``: a PACS export, a modality's share).

:func:`load_drop` lists the drop, reads only the objects it has not read before, and sends each
through the one per-image path (:func:`~cxr.ingest.decode.decode_upload`,
:func:`~cxr.ingest.pipeline.detect`, :func:`~cxr.ingest.pipeline.store_detected`) with
``source='ingest'``. ``notebooks/lake_loading.ipynb`` runs it, hourly through Airflow.

What was read is kept in the lake, per drop, as a manifest of the keys seen
(``loading/<source_id>/seen/<part>.json``, :mod:`cxr.stores.layout`): for each object a keyed hash
of its key (a file name can name a patient: the key itself is never stored), its size and its
ETag (S3) or modification time (a folder), and whether it was stored or refused. Each run writes
one part with only its new entries, so a run reads the whole drop's *listing* (metadata) but only
the new objects' bytes, and writes only what it read: its cost stays flat as the drop grows. Once
there are more than :data:`COMPACT_AFTER` parts they are merged into one. An object whose size or
ETag/mtime changed is read again. An object refused (not an image) is not retried until it
changes; one that could not be *stored* (the DB or the lake failed) is not in the manifest, so the
next run retries it. A run that stops on such a failure still writes the part for what it did.
"""

from __future__ import annotations

import fnmatch
import json
import time
import uuid
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import timezone
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

from tqdm import tqdm

from cxr.dicom.deid import keyed_hash, load_key
from cxr.errors import ConfigError, CxrError, InputError
from cxr.ingest import names
from cxr.ingest.decode import decode_upload
from cxr.ingest.pipeline import detect, store_detected, utcnow
from cxr.model.predict import Predictor, load_predictor
from cxr.stores import layout
from cxr.stores.catalog import Stores
from cxr.stores.lake import Lake, LocalLake, ObjectInfo, S3Lake

COMPACT_AFTER = 48  # manifest parts kept before they are merged into one
Entry = tuple[int, str, str]  # (size, etag or mtime, "stored" | "refused")


@dataclass
class LoadSummary:
    """What one run of :func:`load_drop` did (names masked: no identifier from a file name)."""

    source: str
    run_id: str
    listed: int = 0  # objects in the drop matching the pattern
    already_seen: int = 0  # read by an earlier run (unchanged): not read again
    read: int = 0  # objects whose bytes this run read
    stored: list[dict] = field(default_factory=list)  # {name, transaction_id, image_id, n_boxes, new_image}
    refused: list[dict] = field(default_factory=list)  # {name, reason}
    warnings: list[dict] = field(default_factory=list)  # {name, warning}
    classes: Counter = field(default_factory=Counter)  # boxes per class, this run
    seconds: float = 0.0

    @property
    def images_per_s(self) -> float:
        return round(len(self.stored) / self.seconds, 2) if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, object]:
        d = asdict(self)
        d["classes"] = dict(self.classes)
        d["images_per_s"] = self.images_per_s
        return d


def source_id(source: str, key: bytes) -> str:
    """The drop's id in the lake: a keyed hash of its normalized URL (32 hex characters)."""
    return keyed_hash(key, "loading-source", normalize_source(source))[:32]


def normalize_source(source: str) -> str:
    """``s3://bucket/prefix/`` or ``file:///abs/folder`` for a source as given (a path or a URL)."""
    text = (source or "").strip()
    if not text:
        raise InputError("no source to load: give a folder or s3://bucket/prefix (parameter source, or "
                         "CXR_LOADING_SOURCE)")
    parts = urlsplit(text)
    if parts.scheme == "s3":
        if not parts.netloc:
            raise InputError(f"source {text!r} names no bucket")
        return f"s3://{parts.netloc}/{parts.path.strip('/')}".rstrip("/") + "/"
    if parts.scheme not in ("", "file"):
        raise InputError(f"source {text!r}: use a folder or s3://bucket/prefix")
    return Path(parts.path if parts.scheme == "file" else text).expanduser().resolve().as_uri()


def open_source(source: str, stores: Stores) -> Lake:
    """The drop as a (read-only here) lake: a folder that exists, or a bucket prefix on the settings' endpoint."""
    url = normalize_source(source)
    if url.startswith("s3://"):
        s = stores.settings
        bucket, _, prefix = url[5:].partition("/")
        try:
            return S3Lake(bucket, prefix, endpoint_url=s.s3_endpoint_url, region=s.s3_region, profile=s.aws_profile)
        except ConfigError as exc:
            raise InputError(f"source {url}: {str(exc).split(': ', 1)[-1]}") from None
    folder = Path(urlsplit(url).path)
    if not folder.is_dir():
        raise InputError(f"source folder {folder} does not exist")
    return LocalLake(folder)


def _stamp(info: ObjectInfo) -> str:
    ts = info.last_modified if info.last_modified.tzinfo else info.last_modified.replace(tzinfo=timezone.utc)
    return info.etag or ts.astimezone(timezone.utc).isoformat(timespec="microseconds")


def read_manifest(lake: Lake, sid: str) -> tuple[dict[str, Entry], list[str]]:
    """Every entry of the drop's manifest (later parts win) and the keys of its parts."""
    entries: dict[str, Entry] = {}
    keys = sorted(info.key for info in lake.list(layout.loading_prefix(sid)) if info.key.endswith(".json"))
    for key in keys:
        for h, (size, stamp, status) in json.loads(lake.get(key))["entries"].items():
            entries[h] = (int(size), str(stamp), str(status))
    return entries, keys


def _write_part(lake: Lake, sid: str, run_id: str, entries: dict[str, Entry]) -> str | None:
    if not entries:
        return None
    part = f"{utcnow():%Y%m%dT%H%M%S%f}-{uuid.uuid4().hex[:8]}"
    key = layout.loading_part_key(sid, part)
    lake.put(key, json.dumps({"source_id": sid, "run_id": run_id, "entries": entries}, sort_keys=True).encode(),
             content_type="application/json")
    return key


def _compact(lake: Lake, sid: str, run_id: str) -> None:
    """Merge the parts into one when there are many (the merged part is written before any is deleted)."""
    entries, keys = read_manifest(lake, sid)
    if len(keys) <= COMPACT_AFTER:
        return
    merged = _write_part(lake, sid, run_id, entries)
    for key in keys:
        if key != merged:
            lake.delete(key)


def load_drop(stores: Stores, source: str, *, pattern: str = "*", run_id: str | None = None,
              predictor: Predictor | None = None, progress: bool | None = None,
              source_lake: Lake | None = None) -> LoadSummary:
    """Ingest the new objects of ``source`` matching ``pattern`` (see the module)."""
    settings = stores.settings
    drop = source_lake or open_source(source, stores)
    key = load_key(settings)
    sid = source_id(source, key)
    run_id = (run_id or f"load-{utcnow():%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}")[:64]
    predictor = predictor or load_predictor(settings)
    seen, _ = read_manifest(stores.lake, sid)
    summary = LoadSummary(source=names.mask_digits(normalize_source(source)), run_id=run_id)
    todo: list[tuple[ObjectInfo, str]] = []
    for info in drop.list(""):
        rel = PurePosixPath(info.key)
        if any(part.startswith(".") for part in rel.parts) or not fnmatch.fnmatch(info.key, pattern):
            continue
        summary.listed += 1
        h = keyed_hash(key, "loading-key", info.key)[:32]
        old = seen.get(h)
        if old is not None and old[:2] == (info.size, _stamp(info)):
            summary.already_seen += 1
            continue
        todo.append((info, h))
    new: dict[str, Entry] = {}
    t0 = time.perf_counter()
    bar = tqdm(total=len(todo), unit="img", desc="load", disable=None if progress is None else not progress)
    try:
        for info, h in todo:
            bar.update(1)
            new[h] = (info.size, _stamp(info), _load_one(stores, drop, info, predictor, run_id, summary))
    finally:
        bar.close()
        summary.seconds = round(time.perf_counter() - t0, 3)
        _write_part(stores.lake, sid, run_id, new)
    _compact(stores.lake, sid, run_id)
    return summary


def _load_one(stores: Stores, drop: Lake, info: ObjectInfo, predictor: Predictor, run_id: str,
              summary: LoadSummary) -> str:
    """Read, decode, detect and store one object; ``"stored"`` or ``"refused"`` (a store failure raises)."""
    s = stores.settings
    name = PurePosixPath(info.key).name
    shown = names.mask_path(info.key)
    try:
        if info.size > s.max_upload_bytes:
            raise InputError(f"file is {info.size:,} bytes, more than the {s.max_upload_bytes:,}-byte limit "
                             "(CXR_MAX_UPLOAD_BYTES)")
        try:
            data = drop.get(info.key)
        except CxrError as exc:  # an invalid key, or gone since the listing
            raise InputError(str(exc)) from None
        summary.read += 1
        upload = decode_upload(name, data, s)
    except InputError as exc:
        summary.refused.append({"name": shown, "reason": str(exc)})
        return "refused"
    shown = names.mask_path(PurePosixPath(info.key).with_name(upload.name or name).as_posix())
    detected = detect(upload, predictor, score_thr=s.score_thr, nms_thr=s.nms_thr)
    res = store_detected(stores, detected, score_thr=s.score_thr, nms_thr=s.nms_thr,
                         model_version=predictor.model_version, run_id=run_id, source="ingest", resume=True)
    records = detected.detections.records() if detected.detections is not None else []
    summary.classes.update(str(r["class_name"]) for r in records)
    summary.stored.append({"name": shown, "transaction_id": res.transaction_id, "image_id": res.image_id,
                           "n_boxes": res.n_boxes, "new_image": res.created_image})
    summary.warnings.extend({"name": shown, "warning": w} for w in upload.warnings)
    if detected.skip_reason:
        summary.warnings.append({"name": shown, "warning": f"not run: {detected.skip_reason}"})
    return "stored"
