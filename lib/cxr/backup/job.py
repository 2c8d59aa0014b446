"""The backup job (stage 3): a short sequence of named steps, on local Spark or, via ``glue/``, on AWS Glue.

One run (:func:`run_backup`):

1. clean up runs a crash left without ``_SUCCESS`` (invisible to readers, deleted here);
2. verify the *pending* runs (committed, not purged yet): their transactions are excluded from
   this run's plan, so a re-run after a crash between write and purge writes no duplicate;
3. plan with SQLAlchemy Core: the transaction ids with ``time < before`` not already backed up;
4. write: extract with Spark (partitioned JDBC reads), check the extract against the plan, write
   ``backup/<layout>/run=<id>/`` (local Spark: to a staging directory, then uploaded through the
   lake adapter; on Glue: ``s3://`` directly), then the manifest, then ``_SUCCESS``
   (:mod:`cxr.backup.steps`);
5. verify the new run: read the lake copy back (pyarrow), compare counts and id checksums;
6. purge (opt-in): the warehouse-watermark guard, then ONE DB transaction that deletes exactly
   the verified rows, then ``<run_id>.purged.json`` (:mod:`cxr.backup.purge`).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta

from pymongo.database import Database
from pyspark.sql import SparkSession
from sqlalchemy import Engine

import numpy as np

from cxr.backup import steps
from cxr.backup.glue import run_on_glue
from cxr.backup.purge import purge_verified
from cxr.backup.report import BackupReport
from cxr.backup.spark import TableReader
from cxr.config import Settings
from cxr.errors import InputError, IntegrityError
from cxr.stores.backup_reader import Manifest
from cxr.stores.catalog import Stores
from cxr.stores.lake import Lake
from cxr.stores.layout import BackupLayout, check_layout


def default_before(settings: Settings, now: datetime | None = None) -> datetime:
    """now - retention_days, as a naive UTC datetime (transaction.time is naive UTC)."""
    now = now or datetime.now(UTC).replace(tzinfo=None)
    return now - timedelta(days=settings.retention_days)


def parse_before(value: str | date | datetime | None, settings: Settings) -> datetime:
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


def run_backup(settings: Settings | None = None, *, before: str | date | datetime | None = None,
               purge_db: bool = False, dry_run: bool = False, force: bool = False, layout: BackupLayout = "month",
               spark: SparkSession | None = None, reader: TableReader | None = None, direct_write: bool = False,
               stores: Stores | None = None, engine: Engine | None = None, lake: Lake | None = None,
               warehouse: Database | None = None, num_partitions: int = 4,
               after_write: Callable[[Manifest], None] | None = None) -> BackupReport:
    """Run the backup once (see the module docstring). ``spark``/``reader`` default to local Spark
    over JDBC; the Glue script passes its own (Glue connection, ``direct_write=True`` to s3://).
    ``after_write`` is called once the new run is committed (tests use it to simulate a crash)."""
    stores = stores or Stores.open(settings, engine=engine, lake=lake, warehouse=warehouse)
    check_layout(layout)
    cutoff = parse_before(before, stores.settings)
    timer = steps.Timer()
    with timer("plan_s"):
        cleaned = steps.clean_incomplete(stores.lake, dry_run)
        runs = steps.verify_pending(stores.lake)
        tids, iids = steps.plan_ids(stores.engine, cutoff, steps.transaction_ids(runs))
    planned = {"transactions": int(tids.size), "images": int(np.unique(iids).size)}
    report = BackupReport(None, layout, cutoff, dry_run, planned,
                          [r.manifest.run_id for r in runs], cleaned, timings=timer.timings)
    report.verification = steps.checks_of(runs)
    if dry_run:
        return report
    steps.require_verified(runs, "nothing was written or purged", which="pending")
    if tids.size:
        plan = steps.WritePlan(tids, iids, cutoff, layout, spark, reader, direct_write, num_partitions)
        report.manifest = steps.write_run(stores, plan, timer)
        report.run_id = report.manifest.run_id
        if after_write is not None:
            after_write(report.manifest)
        with timer("verify_s"):
            runs.append(steps.verify_run(stores.lake, report.manifest))
        report.verification = steps.checks_of(runs)
        steps.require_verified(runs, "nothing was purged")
    if purge_db and runs:
        with timer("purge_s"):
            try:
                report.purged = purge_verified(stores, runs, force=force)
            except IntegrityError as exc:  # refused: the CLI still shows what was written and verified
                report.purge_refused = str(exc)
                exc.report = report  # type: ignore[attr-defined]
                raise
    return report


def run_stage(engine: str | None = "local", *, before: str | date | datetime | None = None, purge: bool = False,
              glue_job_name: str | None = None, layout: BackupLayout = "month", dry_run: bool = False,
              force: bool = False, settings: Settings | None = None) -> BackupReport:
    """The notebook's entry: run the backup on local Spark (``engine`` "local" or None), or start the
    Glue job and wait for it (``engine="glue"``; the report is then rebuilt from what it committed)."""
    stores = Stores.open(settings)
    if engine in (None, "", "local"):
        return run_backup(stores=stores, before=before, purge_db=purge, dry_run=dry_run, force=force, layout=layout)
    if engine != "glue":
        raise InputError(f"engine: use 'local' or 'glue', not {engine!r}")
    return run_on_glue(stores.settings, stores.lake, job_name=glue_job_name, before=parse_before(before, stores.settings),
                       purge_db=purge, force=force, layout_name=check_layout(layout), dry_run=dry_run)
