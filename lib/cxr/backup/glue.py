"""Stage 3 on AWS Glue: start the Glue job that runs ``glue/backup_job.py``, wait, read its report back.

The Glue job runs the same :func:`cxr.backup.job.run_backup` on Glue's Spark; this side only starts
it through boto3, polls it, and rebuilds the report from what the run committed to the lake.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

import boto3

from cxr.backup.report import BackupReport
from cxr.backup.steps import verify_run
from cxr.config import Settings
from cxr.errors import ConfigError, IntegrityError
from cxr.stores import layout
from cxr.stores.backup_reader import list_manifests
from cxr.stores.lake import Lake
from cxr.stores.layout import BackupLayout

FINAL_STATES = ("SUCCEEDED", "FAILED", "ERROR", "TIMEOUT", "STOPPED")


def glue_arguments(before: datetime, *, purge_db: bool, force: bool, layout: BackupLayout, dry_run: bool = False) -> dict[str, str]:
    """The Glue job's arguments (``--key value``) for :func:`start_glue_job`."""
    args = {"--before": before.isoformat(), "--purge": str(purge_db).lower(), "--force": str(force).lower(),
            "--layout": layout}
    if dry_run:
        args["--dry-run"] = "true"
    return args


def start_glue_job(settings: Settings, job_name: str, arguments: dict[str, str], *, poll_s: float = 15.0,
                   timeout_s: float = 6 * 3600) -> dict[str, Any]:
    """Start the Glue job running ``glue/backup_job.py`` and wait for it; return the final JobRun."""
    session = boto3.session.Session(profile_name=settings.aws_profile, region_name=settings.s3_region)
    glue = session.client("glue")
    run_id = glue.start_job_run(JobName=job_name, Arguments=arguments)["JobRunId"]
    deadline = time.monotonic() + timeout_s
    while True:
        run = glue.get_job_run(JobName=job_name, RunId=run_id, PredecessorsIncluded=False)["JobRun"]
        if run["JobRunState"] in FINAL_STATES:
            break
        if time.monotonic() > deadline:
            raise IntegrityError(f"Glue job {job_name} run {run_id} still {run['JobRunState']} after {timeout_s:.0f} s")
        time.sleep(poll_s)
    if run["JobRunState"] != "SUCCEEDED":
        raise IntegrityError(f"Glue job {job_name} run {run_id} ended {run['JobRunState']}: {run.get('ErrorMessage', '')}")
    return run


def report_since(lake: Lake, started: str, before: datetime, layout_name: BackupLayout, dry_run: bool) -> BackupReport:
    """The report of what a Glue run committed after ``started`` (ISO time): its manifest, verified again here."""
    manifests, success, purged = list_manifests(lake)
    new = [m for m in manifests if m.run_id in success and m.created_at >= started]
    planned = {"transactions": sum(m.summary["transactions"] for m in new),
               "images": sum(m.summary["images"] for m in new)}
    report = BackupReport(new[-1].run_id if new else None, layout_name, before, dry_run, planned)
    if new:
        report.manifest = new[-1]
        report.verification = [c for m in new for c in verify_run(lake, m).checks]
        if new[-1].run_id in purged:
            report.purged = json.loads(lake.get(layout.purged_key(new[-1].run_id)))["batch_deleted"]
    return report


def run_on_glue(settings: Settings, lake: Lake, *, job_name: str | None, before: datetime, purge_db: bool,
                force: bool, layout_name: BackupLayout, dry_run: bool) -> BackupReport:
    """Start the backup on Glue, wait for it, and report what it committed."""
    name = job_name or settings.glue_job_name
    if not name:
        raise ConfigError("no Glue job name given", setting="CXR_GLUE_JOB_NAME")
    started = datetime.now(UTC).isoformat()
    start_glue_job(settings, name, glue_arguments(before, purge_db=purge_db, force=force, layout=layout_name,
                                                  dry_run=dry_run))
    return report_since(lake, started, before, layout_name, dry_run)
