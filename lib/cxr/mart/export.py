"""The mart export job: warehouse (optionally through an SSH tunnel) + lake -> COCO in OUT_DIR.

Layout written::

    OUT_DIR/images/<image_id>_<sha256[:12]>.png     PNG renditions from the lake
    OUT_DIR/annotations/instances.json              all splits; instances_train.json, instances_val.json
    OUT_DIR/README.md                               the dataset card
    OUT_DIR/.mart-downloads.jsonl                   what was fetched, with its sha256 (for resuming)

Downloads run in a thread pool. A file is written under a temporary name and renamed into
place once complete and checked (PNG at the size the warehouse records), then noted in the
download log; a re-run skips every file whose bytes still hash to the logged sha256, so an
interrupted export resumes where it stopped. A download that still fails after its retries is
reported, and the export then raises before writing any annotation file: no COCO file ever
names a missing image. The annotation files and the card are written atomically.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from PIL import Image
from pymongo.database import Database
from sqlalchemy import Engine
from tqdm.auto import tqdm

from cxr.auth.audit import Actor, record
from cxr.config import Settings, get_settings
from cxr.errors import CxrError, InputError, IntegrityError
from cxr.mart.coco import ImageFile, MartBuild, build_coco, class_counts, class_table, dataset_card, subset
from cxr.mart.filters import MartFilters, has_reviews, warehouse_query
from cxr.model.registry import read_metadata, resolve_model_dir
from cxr.stores import warehouse
from cxr.stores.db import reading as db_reading
from cxr.stores.lake import Lake, ObjectNotFound, lake_from_settings
from cxr.stores.watermark import get_watermark

DOWNLOAD_LOG = ".mart-downloads.jsonl"
IMAGES_DIR = "images"
ANNOTATIONS_DIR = "annotations"


@dataclass
class FetchStats:
    downloaded: int = 0
    skipped: int = 0
    bytes: int = 0
    failures: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ExportResult:
    out_dir: Path
    images: int  # COCO image entries (selected transactions)
    files: int  # image files in images/
    annotations: int
    per_class: dict[str, dict[str, int]]
    per_split: dict[str, int]
    downloaded: int
    skipped: int
    seconds: float
    watermark: int | None

    def summary(self) -> str:
        return (f"{self.out_dir}: {self.images} images ({self.per_split.get('train', 0)} train, "
                f"{self.per_split.get('val', 0)} val), {self.annotations} annotations; "
                f"{self.downloaded} files downloaded, {self.skipped} already present; {self.seconds:.1f}s")


# -- the warehouse ------------------------------------------------------------------------------
def fetch_documents(database: Database, f: MartFilters) -> list[dict]:
    """The ``images`` documents that may hold a selected transaction, ordered by image_id."""
    return list(database[warehouse.IMAGES_COLLECTION].find(warehouse_query(f), {"_id": 0}).sort("image_id", 1))


# -- downloads ---------------------------------------------------------------------------------

def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _png_size(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as im:
        if im.format != "PNG":
            raise ValueError(f"not a PNG ({im.format})")
        im.load()  # decodes every row: a truncated or corrupt object fails here, not in training
        return im.size


def read_download_log(out_dir: Path) -> dict[str, str]:
    """``file name -> sha256`` of what earlier runs fetched into ``out_dir`` (last entry wins)."""
    log = Path(out_dir) / DOWNLOAD_LOG
    done: dict[str, str] = {}
    if log.is_file():
        for line in log.read_text(encoding="utf-8").splitlines():
            try:
                row = json.loads(line)
                done[row["file"]] = row["sha256"]
            except (ValueError, KeyError, TypeError):
                continue  # a line cut short by a crash: that file is fetched again
    return done


def _file_ok(path: Path, sha256: str | None) -> bool:
    if sha256 is None or not path.is_file():
        return False
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest() == sha256


def _fetch_one(lake: Lake, item: ImageFile, images_dir: Path, retries: int, backoff: float) -> tuple[str, int]:
    """Download one rendition, check it, write it atomically; returns (sha256, bytes)."""
    last: Exception | None = None
    for attempt in range(retries + 1):
        try:
            data = lake.get(item.key)
            break
        except ObjectNotFound:
            raise
        except Exception as exc:  # noqa: BLE001 - network errors of any client: retry, then report
            last = exc
            if attempt < retries:
                time.sleep(backoff * 2**attempt)
    else:
        raise CxrError(f"{item.key}: {type(last).__name__}: {last}") from last
    try:
        size = _png_size(data)
    except Exception as exc:  # noqa: BLE001 - any decoder error means a bad object
        raise IntegrityError(f"{item.key}: does not decode as PNG: {exc}") from None
    if size != (item.width, item.height):
        raise IntegrityError(f"{item.key}: {size[0]}x{size[1]} but the warehouse records {item.width}x{item.height}")
    fd, tmp = tempfile.mkstemp(dir=images_dir, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, images_dir / item.file_name)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return _sha256(data), len(data)


def fetch_images(lake: Lake, files: Sequence[ImageFile], out_dir: Path, *, workers: int = 16, retries: int = 3,
                 backoff: float = 0.5, progress: bool | None = None) -> FetchStats:
    """Fetch ``files`` into ``out_dir/images`` concurrently, skipping those already there intact.

    Failures are collected (not raised) in ``FetchStats.failures``; an interrupt stops the
    pool and leaves every finished file logged for the next run.
    """
    out_dir = Path(out_dir)
    images_dir = out_dir / IMAGES_DIR
    images_dir.mkdir(parents=True, exist_ok=True)
    done = read_download_log(out_dir)
    stats = FetchStats()
    todo = []
    for item in files:
        if _file_ok(images_dir / item.file_name, done.get(item.file_name)):
            stats.skipped += 1
        else:
            todo.append(item)
    show = sys.stderr.isatty() if progress is None else progress
    lock = threading.Lock()
    with (out_dir / DOWNLOAD_LOG).open("a", encoding="utf-8") as log, \
            tqdm(total=len(files), initial=stats.skipped, unit="img", desc="mart images", disable=not show) as bar:

        def task(item: ImageFile) -> None:
            try:
                sha, n = _fetch_one(lake, item, images_dir, retries, backoff)
            except CxrError as exc:
                with lock:
                    stats.failures.append(str(exc))
                return
            except Exception as exc:  # noqa: BLE001 - reported with the others
                with lock:
                    stats.failures.append(f"{item.key}: {type(exc).__name__}: {exc}")
                return
            with lock:
                log.write(json.dumps({"file": item.file_name, "key": item.key, "sha256": sha, "bytes": n}) + "\n")
                log.flush()
                stats.downloaded += 1
                stats.bytes += n
                bar.update(1)

        pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="mart-fetch")
        try:
            for fut in as_completed([pool.submit(task, item) for item in todo]):
                fut.result()
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
    return stats


# -- writing -----------------------------------------------------------------------------------

def write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_export(out_dir: Path, build: MartBuild, card: str) -> None:
    """Check every named image is on disk, then write the annotation files and the card."""
    out_dir = Path(out_dir)
    missing = [f.file_name for f in build.files if not (out_dir / IMAGES_DIR / f.file_name).is_file()]
    if missing:
        raise IntegrityError(f"{len(missing)} image(s) missing from {out_dir / IMAGES_DIR} (first: {missing[0]}); "
                             "no annotation file written")
    ann = out_dir / ANNOTATIONS_DIR
    for split in ("train", "val"):
        write_atomic(ann / f"instances_{split}.json", json.dumps(subset(build.coco, split)))
    write_atomic(ann / "instances.json", json.dumps(build.coco))
    write_atomic(out_dir / "README.md", card)


# -- the job -----------------------------------------------------------------------------------

def model_classes(settings: Settings, version: str | None = None) -> tuple[str, ...] | None:
    """The classes of the registry's model (``version``, else the configured one); None when not installed."""
    try:
        model_dir = resolve_model_dir(settings.models_dir, settings.model_name, version or settings.model_version)
        return tuple(read_metadata(model_dir).classes)
    except CxrError:
        return None


def export_mart(out_dir: Path | str, filters: MartFilters | None = None, *, settings: Settings | None = None,
                database: Database | None = None, lake: Lake | None = None, classes: Sequence[str] | None = None,
                workers: int = 16, retries: int = 3, backoff: float = 0.5, progress: bool | None = None,
                via_tunnel: bool | None = None, now: Callable[[], datetime] | None = None,
                engine: Engine | None = None, actor: Actor | None = None) -> ExportResult:
    """Export the warehouse's labels under ``filters`` as a COCO dataset in ``out_dir``.

    ``database``/``lake`` default to the stores named by ``settings`` (the warehouse through
    the SSH tunnel when ``CXR_SSH_HOST`` is set or ``via_tunnel``). ``classes`` are the model's
    class names by class_id (default: the registry's model, else what the documents name).
    With ``engine`` (the entry points pass the metadata DB's) the export is recorded in the audit
    trail as ``actor`` (default: the operator) before any annotation file is written.
    """
    t0 = time.perf_counter()
    s = settings or get_settings()
    f = filters or MartFilters()
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise InputError(f"{out} exists and is not a directory")
    if database is None:
        with warehouse.open_warehouse(s, via_tunnel) as db:
            docs, watermark = fetch_documents(db, f), get_watermark(db)
        where = warehouse.describe(s, via_tunnel)
    else:
        docs, watermark, where = fetch_documents(database, f), get_watermark(database), _db_address(database)
    lake = lake or lake_from_settings(s)
    table = class_table(docs, classes if classes is not None else model_classes(s, f.model_version))
    created = (now or (lambda: datetime.now(timezone.utc)))().replace(microsecond=0)
    source = {"warehouse": where, "database": database.name if database is not None else s.warehouse_db,
              "watermark": watermark, "lake": lake.url}
    labels = f.labels or ("reviewed" if has_reviews(docs) else "predicted")
    build = build_coco(docs, f, table, created=created, info={"source": source}, labels=labels)
    stats = fetch_images(lake, build.files, out, workers=workers, retries=retries, backoff=backoff, progress=progress)
    if stats.failures:
        head = "; ".join(sorted(stats.failures)[:3])
        raise IntegrityError(f"{len(stats.failures)} of {len(build.files)} image(s) could not be fetched "
                             f"({head}); no annotation file written, re-run to resume")
    if engine is not None:
        coco = build.coco
        with db_reading("recording the export in the audit trail"):
            record(engine, actor or Actor.operator(), "export", object_type="transaction",
                   object_ids=[im["id"] for im in coco["images"]][:40],
                   detail={"images": len(coco["images"]), "annotations": len(coco["annotations"]), "labels": labels,
                           "reviewed_images": sum(1 for im in coco["images"] if im.get("reviewed"))})
    write_export(out, build, dataset_card(build.coco, source=source, dropped_boxes=build.dropped_boxes))
    per_split = {sp: sum(1 for im in build.coco["images"] if im["split"] == sp) for sp in ("train", "val")}
    return ExportResult(out, len(build.coco["images"]), len(build.files), len(build.coco["annotations"]),
                        class_counts(build.coco), per_split, stats.downloaded, stats.skipped,
                        time.perf_counter() - t0, watermark)


def _db_address(database: Database) -> str:
    try:
        host, port = database.client.address
        return f"mongodb://{host}:{port}"
    except Exception:  # noqa: BLE001 - only for the card
        return "?"


def load_instances(out_dir: Path | str) -> dict:
    """The exported ``annotations/instances.json``."""
    return json.loads((Path(out_dir) / ANNOTATIONS_DIR / "instances.json").read_text(encoding="utf-8"))
