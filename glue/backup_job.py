"""AWS Glue entry script of the backup (stage 3); also runs on a plain SparkSession.

On Glue (``awsglue`` importable) it builds a GlueContext and a Job, reads the three tables
through the Glue connection named by ``--connection-name`` as DynamicFrames (hash-partitioned on
the id column), and writes the parquet straight to ``s3://``. Without ``awsglue`` (not on PyPI)
it runs on a local SparkSession over JDBC and uploads through the lake adapter. Either way the
work is :func:`cxr.backup.job.run_backup` and the pure transforms in :mod:`cxr.backup.transforms`.
This script only wires: arguments, the Glue context and its connection reader, the report.

Glue job setup (docs/deploy-aws.md): script = this file; ``--additional-python-modules`` = the cxr
wheel's S3 path (pip installs it with its dependencies: SQLAlchemy for the plan and the verified purge,
pymongo for the watermark guard); job arguments ``--lake-url s3://bucket/prefix``, ``--connection-name <glue connection>``,
``--db-secret-id <Secrets Manager id whose SecretString is the SQLAlchemy DB URL>`` and optionally
``--before``, ``--purge true``, ``--force true``, ``--layout month|week|image_id``. Other
settings come from ``CXR_*`` variables as everywhere (e.g. ``CXR_WAREHOUSE_URL`` for the guard).

Local: ``python glue/backup_job.py --before 2024-01-01 [--purge true]`` (same as ``cxr backup``).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from pymongo.database import Database
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from sqlalchemy import Engine, Table

from cxr.backup.job import run_backup
from cxr.backup.report import BackupReport
from cxr.backup.spark import TableReader, spark_session
from cxr.config import load_settings
from cxr.errors import CxrError, fail
from cxr.stores.aws import finish_job, secret_string, start_glue_job
from cxr.stores.lake import Lake


def _bool(value: str) -> bool:
    v = str(value).strip().lower()
    if v in ("true", "1", "yes"):
        return True
    if v in ("false", "0", "no", ""):
        return False
    raise argparse.ArgumentTypeError(f"not a boolean: {value!r}")


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="backup_job.py", description="cxr stage 3 backup (Glue or local Spark)")
    p.add_argument("--JOB_NAME", default="cxr-backup")
    p.add_argument("--before", default=None)
    p.add_argument("--purge", type=_bool, default=False)
    p.add_argument("--force", type=_bool, default=False)
    p.add_argument("--dry-run", dest="dry_run", type=_bool, default=False)
    p.add_argument("--layout", default="month", choices=("month", "week", "image_id"))
    p.add_argument("--lake-url", dest="lake_url", default=None)
    p.add_argument("--connection-name", dest="connection_name", default=None)
    p.add_argument("--db-secret-id", dest="db_secret_id", default=None)
    p.add_argument("--num-partitions", dest="num_partitions", type=int, default=8)
    args, _glue_extras = p.parse_known_args(argv)  # Glue adds its own (--TempDir, --job-bookmark-option, ...)
    return args



def glue_reader(glue_context: Any, connection_name: str) -> TableReader:
    """Read a table through the Glue connection as a DynamicFrame, hash-partitioned on its id column."""

    def read(table: Table, id_column: str, lower: int, upper: int, num_partitions: int) -> DataFrame:
        frame = glue_context.create_dynamic_frame.from_options(
            connection_type="mysql",
            connection_options={"useConnectionProperties": "true", "connectionName": connection_name,
                                "dbtable": table.name, "hashfield": id_column, "hashpartitions": str(num_partitions)},
            transformation_ctx=f"read_{table.name}",
        )
        return frame.toDF().where(F.col(id_column).between(lower, upper))

    return read



def main(argv: list[str] | None = None, *, spark: SparkSession | None = None, engine: Engine | None = None,
         lake: Lake | None = None, warehouse: Database | None = None) -> BackupReport:
    """Run one backup; returns the :class:`cxr.backup.report.BackupReport`. Keyword arguments are for tests."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    overrides: dict[str, object] = {}
    if args.lake_url:
        overrides["lake_url"] = args.lake_url
    job = reader = None
    try:
        settings = load_settings(**overrides)
        if args.db_secret_id:
            settings = load_settings(**overrides, db_url=secret_string(args.db_secret_id, settings.s3_region))
        if (glue := start_glue_job(args.JOB_NAME, vars(args))) is not None:
            glue_context, job = glue
            spark = glue_context.spark_session
            if args.connection_name:
                reader = glue_reader(glue_context, args.connection_name)
        else:
            spark = spark or spark_session(settings)
        report = run_backup(settings, before=args.before, purge_db=args.purge, dry_run=args.dry_run, force=args.force,
                            layout=args.layout, spark=spark, reader=reader, direct_write=glue is not None,
                            engine=engine, lake=lake, warehouse=warehouse, num_partitions=args.num_partitions)
    except CxrError as exc:
        fail(exc)
    finish_job(report, job)
    return report


if __name__ == "__main__":
    main()
