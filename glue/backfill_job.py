"""AWS Glue (or EMR) entry script of the backfill; also runs on a plain local SparkSession.

On Glue (``awsglue`` importable) it takes the session of a GlueContext and commits a Job; on EMR
(``spark-submit glue/backfill_job.py ...``) and locally it uses the shared session builder. Either way
the work is :func:`cxr.backfill.job.run_backfill`: list SOURCE on the driver, ``mapPartitions`` tasks
that each open their own stores and predictor and run ingest's per-file path, the refusals parquet and
the run record in the lake. This script only wires: arguments, secrets, the model folder, the report.

Glue job setup (docs/deploy-aws.md): script = this file; ``--additional-python-modules`` = the cxr
wheel's S3 path (pip installs it with its dependencies) plus the decoders of the ``app`` extra:
``imagecodecs,pylibjpeg,pylibjpeg-openjpeg,pylibjpeg-libjpeg,pylibjpeg-rle``; job arguments
``--source s3://archive-bucket/export/``, ``--lake-url s3://bucket/prefix``, ``--db-secret-id <Secrets
Manager id whose SecretString is the SQLAlchemy DB URL>``, ``--deid-key-secret-id <id of the
de-identification key, the same CXR_DEID_KEY every other ingest uses>``, ``--models-url
s3://bucket/models/`` (the registry, copied to the driver and shipped to the executors) and optionally
``--files-per-task``, ``--run-id``.

Local: ``python glue/backfill_job.py --source /data/export --master local[2]`` (same as ``cxr backfill``).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from pyspark.sql import SparkSession

from cxr.backfill.job import FILES_PER_TASK, run_backfill
from cxr.backfill.report import BackfillReport
from cxr.config import Settings, load_settings
from cxr.errors import CxrError, fail
from cxr.stores.aws import finish_job, secret_string, start_glue_job
from cxr.stores.catalog import Stores
from cxr.stores.lake import Lake, open_lake


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="backfill_job.py", description="cxr backfill (Glue, EMR or local Spark)")
    p.add_argument("--JOB_NAME", default="cxr-backfill")
    p.add_argument("--source", required=True)
    p.add_argument("--master", default=None, help="local runs only (Glue and EMR bring their own)")
    p.add_argument("--files-per-task", dest="files_per_task", type=int, default=FILES_PER_TASK)
    p.add_argument("--run-id", dest="run_id", default=None)
    p.add_argument("--lake-url", dest="lake_url", default=None)
    p.add_argument("--db-secret-id", dest="db_secret_id", default=None)
    p.add_argument("--deid-key-secret-id", dest="deid_key_secret_id", default=None)
    p.add_argument("--models-url", dest="models_url", default=None)
    args, _glue_extras = p.parse_known_args(argv)  # Glue adds its own (--TempDir, --job-bookmark-option, ...)
    return args




def fetch_models(models_url: str, settings: Settings, dest: Path) -> Path:
    """Copy the model registry under ``models_url`` (s3:// or file://) to ``dest`` on the driver."""
    registry = open_lake(models_url, endpoint_url=settings.s3_endpoint_url, region=settings.s3_region,
                         profile=settings.aws_profile)
    for obj in registry.list(""):
        target = dest / obj.key
        target.parent.mkdir(parents=True, exist_ok=True)
        registry.download(obj.key, target)
    return dest


def job_settings(args: argparse.Namespace, work: Path) -> Settings:
    """Settings from ``CXR_*`` plus the job's arguments and secrets."""
    overrides: dict[str, object] = {}
    if args.lake_url:
        overrides["lake_url"] = args.lake_url
    settings = load_settings(**overrides)
    if args.db_secret_id:
        overrides["db_url"] = secret_string(args.db_secret_id, settings.s3_region)
    if args.deid_key_secret_id:
        overrides["deid_key"] = secret_string(args.deid_key_secret_id, settings.s3_region)
    if args.models_url:
        overrides["models_dir"] = fetch_models(args.models_url, settings, work / "models")
    return load_settings(**overrides) if overrides else settings


def main(argv: list[str] | None = None, *, spark: SparkSession | None = None, lake: Lake | None = None) -> BackfillReport:
    """Run one backfill; returns its :class:`~cxr.backfill.report.BackfillReport`. Keywords are for tests."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    job = None
    try:
        with tempfile.TemporaryDirectory(prefix="cxr-backfill-") as work:
            settings = job_settings(args, Path(work))
            if (glue := start_glue_job(args.JOB_NAME, vars(args))) is not None:
                glue_context, job = glue
                spark = glue_context.spark_session
            elif spark is None and args.master is None and os.environ.get("PYSPARK_GATEWAY_PORT"):
                spark = SparkSession.builder.appName(args.JOB_NAME).getOrCreate()  # spark-submit (EMR): its master
            report = run_backfill(args.source, stores=Stores.open(settings, lake=lake), spark=spark, master=args.master,
                                  files_per_task=args.files_per_task, run_id=args.run_id, progress=False)
    except CxrError as exc:
        fail(exc)
    finish_job(report, job)
    return report


if __name__ == "__main__":
    main()
