"""Stage 3, weekly: back the DB's old history up to the lake as parquet, verify it, purge the DB.

Runs notebooks/backup.ipynb. ``before`` is the logical date minus ``retention_days`` (default:
the setting CXR_RETENTION_DAYS / Variable cxr_retention_days), or the ``before`` param. The
purge runs only after the backup verified, and cxr's guard refuses to purge transactions the
warehouse has not loaded yet (the warehouse DAG runs daily).
"""

from datetime import timedelta

from airflow.sdk import Param
from cxr_dag_common import CxrNotebookOperator, cxr_dag

with cxr_dag(
    "cxr_backup_weekly",
    description="Stage 3: DB history -> lake parquet (Spark locally or AWS Glue), verify, purge",
    schedule="@weekly",
    retries=1,
    timeout=timedelta(hours=3),
    params={
        "before": Param(None, type=["null", "string"], description="UTC date YYYY-MM-DD; None: logical date - retention_days."),
        "retention_days": Param(None, type=["null", "integer"], minimum=0, description="None: the setting retention_days."),
        "purge": Param(True, type="boolean", description="Delete the backed-up, verified rows from the DB."),
        "engine": Param(None, type=["null", "string"], description="Backup engine; None: the notebook's default."),
        "glue_job_name": Param(None, type=["null", "string"], description="AWS Glue job (engine glue); None: CXR_GLUE_JOB_NAME."),
    },
    tags=["stage3"],
    doc_md=__doc__,
) as dag:
    CxrNotebookOperator(
        task_id="backup_db_to_lake",
        notebook="backup",
        parameters={
            "before": "{{ params.before or macros.ds_add(ds, -(params.retention_days if params.retention_days is not none"
                      " else cxr_setting('retention_days'))) }}",
            "purge": "{{ params.purge }}",
            "engine": "{{ params.engine }}",
            "glue_job_name": "{{ params.glue_job_name }}",
        },
    )
