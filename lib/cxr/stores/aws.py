"""What the AWS entry scripts (``glue/*_job.py``) share: Secrets Manager and the Glue job's life.

Secrets are read once on the driver and passed on as settings; nothing here writes a secret
anywhere. ``awsglue`` exists only inside AWS Glue (it is not on PyPI): :func:`glue_runtime` and
:func:`start_glue_job` are None elsewhere, and the scripts then run on a plain SparkSession (EMR,
local).
"""

from __future__ import annotations

from typing import Any, Protocol

import boto3


def secret_string(secret_id: str, region: str | None) -> str:
    """The SecretString of a Secrets Manager secret (a DB URL, the de-identification key), stripped."""
    return boto3.client("secretsmanager", region_name=region).get_secret_value(SecretId=secret_id)["SecretString"].strip()


def glue_runtime() -> tuple[Any, Any] | None:
    """(GlueContext, Job) when running on AWS Glue, else None."""
    try:
        from awsglue.context import GlueContext
        from awsglue.job import Job
    except ImportError:
        return None
    return GlueContext, Job


def start_glue_job(name: str, arguments: dict[str, Any]) -> tuple[Any, Any] | None:
    """On AWS Glue: (GlueContext, the initialised Job), whose ``spark_session`` the job runs on; else None."""
    runtime = glue_runtime()
    if runtime is None:
        return None
    from pyspark.context import (
        SparkContext,  # only on Glue, where a SparkContext is the job's
    )

    glue_context_cls, job_cls = runtime
    context = glue_context_cls(SparkContext.getOrCreate())
    job = job_cls(context)
    job.init(name, arguments)
    return context, job


class _Report(Protocol):
    def lines(self) -> list[str]: ...


def finish_job(report: _Report, job: Any | None) -> None:
    """Print a job's report (the Glue or EMR log) and commit the Glue job, if any."""
    for line in report.lines():
        print(line)
    if job is not None:
        job.commit()
