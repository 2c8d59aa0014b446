"""Stage 2, hourly: lake loading. Ingest the new objects of a drop (a folder or s3://bucket/prefix).

Runs notebooks/lake_loading.ipynb. The drop is the ``source`` param, or the setting
CXR_LOADING_SOURCE (Variable ``cxr_loading_source``); the pattern likewise (``cxr_loading_pattern``).
Only objects the drop's manifest in the lake has not seen are read, so each hourly run costs what
arrived since the last one. Each run's transactions carry the run id ``lake-<logical date>``.
"""

from datetime import timedelta

from airflow.sdk import Param
from cxr_dag_common import CxrNotebookOperator, cxr_dag

with cxr_dag(
    "cxr_lake_loading",
    description="Stage 2: a drop (folder or S3 prefix) -> de-identify, detect, store (only new objects)",
    schedule="@hourly",
    retries=2,
    timeout=timedelta(minutes=50),
    params={
        "source": Param(None, type=["null", "string"], description="Folder or s3://bucket/prefix; None: CXR_LOADING_SOURCE."),
        "pattern": Param(None, type=["null", "string"], description="Shell pattern of the keys; None: CXR_LOADING_PATTERN."),
    },
    tags=["stage2"],
    doc_md=__doc__,
) as dag:
    CxrNotebookOperator(
        task_id="load_drop",
        notebook="lake_loading",
        parameters={
            "source": "{{ params.source }}",
            "pattern": "{{ params.pattern }}",
            "run_id": "lake-{{ cxr_run_date(logical_date or dag_run.run_after) }}",
        },
    )
