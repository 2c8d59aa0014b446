"""The backup's steps, each a function :func:`cxr.backup.job.run_backup` calls in order.

clean up incomplete runs -> verify pending runs -> plan -> extract (Spark) -> write parquet ->
manifest -> ``_SUCCESS`` -> verify (pyarrow) -> purge (:mod:`cxr.backup.purge`).
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.compute as pc
from pyspark.sql import DataFrame, SparkSession
from sqlalchemy import Engine, select

from cxr.backup import transforms as T
from cxr.backup.manifest import compare, id_checksum, new_run_id, summarize_table
from cxr.backup.spark import TableReader, jdbc_reader, spark_session
from cxr.backup.tables import verify_tables, write_tables
from cxr.errors import IntegrityError
from cxr.stores import layout
from cxr.stores.layout import BackupLayout
from cxr.stores.backup_reader import Manifest, list_manifests, read_run
from cxr.stores.catalog import Stores
from cxr.stores.lake import Lake
from cxr.stores.schema import image, pred_bounding_box, transaction


@dataclass
class Timer:
    """Seconds per named step, for the report."""

    timings: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.timings[name] = self.timings.get(name, 0.0) + time.perf_counter() - t0


# -- before the write ---------------------------------------------------------------------------
def clean_incomplete(lake: Lake, dry_run: bool) -> list[str]:
    """Delete the objects of runs a crash left without ``_SUCCESS`` (readers ignore them anyway)."""
    manifests, success, _ = list_manifests(lake)
    committed = {m.prefix for m in manifests if m.run_id in success}
    stale: dict[str, list[str]] = {}
    for info in lake.list(layout.BACKUP_PREFIX):
        prefix = layout.backup_run_prefix_of(info.key)
        if prefix is not None and prefix not in committed:
            stale.setdefault(prefix, []).append(info.key)
    for m in manifests:
        if m.run_id not in success:
            stale.setdefault(m.prefix, []).append(layout.manifest_key(m.run_id))
    if not dry_run:
        for keys in stale.values():
            for key in keys:
                lake.delete(key)
    return sorted(stale)


def plan_ids(engine: Engine, before: datetime, exclude: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(transaction ids, their image ids) with ``time < before``, minus ``exclude``; sorted by id."""
    q = select(transaction.c.transaction_id, transaction.c.image_id).where(transaction.c.time < before).order_by(
        transaction.c.transaction_id)
    with engine.connect() as conn:
        rows = conn.execute(q).all()
    tids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
    iids = np.fromiter((r[1] for r in rows), dtype=np.int64, count=len(rows))
    if exclude.size:
        keep = ~np.isin(tids, exclude)
        tids, iids = tids[keep], iids[keep]
    return tids, iids


# -- extract and write --------------------------------------------------------------------------
def extract(spark: SparkSession, reader: TableReader, tids: np.ndarray, iids: np.ndarray,
            num_partitions: int) -> DataFrame:
    """The joined rows of exactly the planned transactions (a Spark DataFrame)."""
    lo, hi = int(tids.min()), int(tids.max())
    ilo, ihi = int(iids.min()), int(iids.max())
    tx = T.normalize(reader(transaction, "transaction_id", lo, hi, num_partitions), transaction)
    tx = T.keep_transactions(tx, T.id_frame(spark, tids))
    boxes = T.normalize(reader(pred_bounding_box, "transaction_id", lo, hi, num_partitions), pred_bounding_box)
    images = T.normalize(reader(image, "image_id", ilo, ihi, num_partitions), image)
    return T.join_rows(images, tx, boxes)


def write_parquet(df: DataFrame, layout_name: BackupLayout, target: str, *, max_records_per_file: int = 5_000_000) -> None:
    """Write the joined rows under ``target`` (a local path or, on Glue, an ``s3://`` URI)."""
    (T.for_write(df, layout_name).write.mode("overwrite").option("maxRecordsPerFile", max_records_per_file)
     .option("compression", "snappy").partitionBy(*layout.BACKUP_LAYOUTS[layout_name]).parquet(target))


def upload_dir(lake: Lake, local_dir: Path, prefix: str) -> list[dict[str, Any]]:
    """Upload the parquet files of ``local_dir`` under ``prefix`` (S3: boto3 multipart above 8 MB)."""
    files = []
    for path in sorted(local_dir.rglob("*.parquet")):
        key = prefix + path.relative_to(local_dir).as_posix()
        lake.put_file(key, path, content_type="application/vnd.apache.parquet")
        files.append({"key": key, "size": path.stat().st_size})
    return files


@dataclass(frozen=True)
class WritePlan:
    """What to write: the planned ids, the cutoff, the layout and how to reach Spark."""

    tids: np.ndarray
    iids: np.ndarray
    before: datetime
    layout: BackupLayout
    spark: SparkSession | None = None
    reader: TableReader | None = None
    direct_write: bool = False  # Glue: write s3:// straight from Spark
    num_partitions: int = 4


def write_run(stores: Stores, plan: WritePlan, timer: Timer) -> Manifest:
    """Extract the planned rows, check them against the plan, write the parquet, the manifest, ``_SUCCESS``.

    A Spark session started here is stopped here: its JVM must not outlive the run (a notebook
    kernel shut down under a live driver logs the driver's half-killed children).
    """
    if plan.spark is not None:
        return _write_run(stores, plan, plan.spark, timer)
    spark = spark_session(stores.settings)
    try:
        return _write_run(stores, plan, spark, timer)
    finally:
        spark.stop()


def _write_run(stores: Stores, plan: WritePlan, spark: SparkSession, timer: Timer) -> Manifest:
    reader = plan.reader or jdbc_reader(spark, stores.engine.url.render_as_string(hide_password=False))
    with timer("extract_s"):
        df = extract(spark, reader, plan.tids, plan.iids, plan.num_partitions).persist()
    try:
        summary = T.summarize(df)
        if summary["transaction_checksum"] != id_checksum(plan.tids):
            raise IntegrityError("the extract differs from the plan (the DB changed during the run?); nothing written")
        partitions = T.partition_counts(df, plan.layout)
        run_id = new_run_id()
        prefix = layout.backup_run_prefix(plan.layout, run_id)
        with timer("load_s"):
            files = _write_files(stores, df, plan, prefix)
            tables = write_tables(stores.engine, stores.lake, prefix, plan.tids)
    finally:
        df.unpersist()
    manifest = Manifest(run_id=run_id, layout=plan.layout, before=plan.before.isoformat(),
                        created_at=datetime.now(UTC).isoformat(), source=stores.engine.dialect.name, summary=summary,
                        partitions=partitions, files=files,
                        transaction_id_range=(int(plan.tids.min()), int(plan.tids.max())), tables=tables)
    stores.lake.put(layout.manifest_key(run_id), manifest.to_json(), content_type="application/json")
    stores.lake.put(manifest.success_key, b"", content_type="text/plain")
    return manifest


def _write_files(stores: Stores, df: DataFrame, plan: WritePlan, prefix: str) -> list[dict[str, Any]]:
    lake = stores.lake
    if plan.direct_write:
        write_parquet(df, plan.layout, lake.uri(prefix))
        return [{"key": i.key, "size": i.size} for i in lake.list(prefix) if i.key.endswith(".parquet")]
    staging_root = Path(stores.settings.data_dir) / "tmp"
    staging_root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix="cxr-backup-", dir=staging_root))
    try:
        write_parquet(df, plan.layout, str(staging / "out"))
        return upload_dir(lake, staging / "out", prefix)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


# -- verify --------------------------------------------------------------------------------------
@dataclass
class VerifiedRun:
    manifest: Manifest
    checks: list[dict[str, Any]]
    transaction_ids: np.ndarray
    box_ids: np.ndarray
    image_ids: np.ndarray
    boxes_per_transaction: dict[int, int]
    reviews: dict[int, set[int]] = field(default_factory=dict)  # transaction_id -> review ids in the copy

    @property
    def ok(self) -> bool:
        return all(c["ok"] for c in self.checks)


def verify_run(lake: Lake, manifest: Manifest) -> VerifiedRun:
    """Read the run back from the lake and compare counts and id checksums with its manifest."""
    table = read_run(lake, manifest, columns=["image_id", "transaction_id", "pred_bbox_id"])
    checks = compare(manifest.run_id, manifest.summary, summarize_table(table))
    files_now = {f["key"] for f in manifest.files if lake.exists(f["key"])}
    checks.append({"run_id": manifest.run_id, "check": "files", "expected": str(len(manifest.files)),
                   "actual": str(len(files_now)), "ok": len(files_now) == len(manifest.files)})
    boxes = table.filter(pc.is_valid(table.column("pred_bbox_id")))
    counts = boxes.group_by("transaction_id").aggregate([("pred_bbox_id", "count")])
    per_tx = dict(zip(counts.column("transaction_id").to_pylist(), counts.column("pred_bbox_id_count").to_pylist()))
    table_checks, reviews = verify_tables(lake, manifest)
    return VerifiedRun(
        manifest, checks + table_checks,
        np.unique(table.column("transaction_id").to_numpy()),
        boxes.column("pred_bbox_id").to_numpy(),
        np.unique(table.column("image_id").to_numpy()),
        per_tx,
        reviews,
    )


def verify_pending(lake: Lake) -> list[VerifiedRun]:
    """Committed runs not purged yet (a crash between write and purge), verified again."""
    manifests, success, purged = list_manifests(lake)
    return [verify_run(lake, m) for m in manifests if m.run_id in success and m.run_id not in purged]


def transaction_ids(runs: list[VerifiedRun]) -> np.ndarray:
    """Every transaction id the runs hold, unique and sorted."""
    return np.unique(np.concatenate([r.transaction_ids for r in runs])) if runs else np.array([], dtype=np.int64)


def checks_of(runs: list[VerifiedRun]) -> list[dict[str, Any]]:
    return [c for r in runs for c in r.checks]


def require_verified(runs: list[VerifiedRun], consequence: str, *, which: str = "") -> None:
    """Raise :class:`IntegrityError` naming the runs whose lake copy differs from their manifest.

    ``which`` qualifies them in the message (``"pending"``: runs of an earlier, unfinished job).
    """
    failed = [r.manifest.run_id for r in runs if not r.ok]
    if failed:
        kind = f"{which} " if which else ""
        raise IntegrityError(f"verification failed for {kind}run(s) {', '.join(failed)}: the lake copy differs "
                             f"from its manifest; {consequence}")
