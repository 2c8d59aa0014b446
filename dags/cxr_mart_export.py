"""Stage 5, by hand: export a COCO data set from the warehouse (through the SSH tunnel when set).

Trigger with params (since, until, classes, min_score, ...). ``out_dir`` defaults to
``var/mart/<logical date>`` in the project; ``until`` defaults to the run's logical date.
"""

from datetime import timedelta

from airflow.sdk import Param
from cxr_dag_common import CxrNotebookOperator, cxr_dag

with cxr_dag(
    "cxr_mart_export",
    description="Stage 5: warehouse -> COCO data set on premises",
    schedule=None,
    retries=1,
    timeout=timedelta(hours=2),
    params={
        "out_dir": Param(None, type=["null", "string"], description="Export folder; None: var/mart/<logical date>."),
        "since": Param(None, type=["null", "string"], description="UTC date/time, inclusive."),
        "until": Param(None, type=["null", "string"], description="UTC date/time, exclusive; None: the logical date's end."),
        "classes": Param(None, type=["null", "string"], description="Comma-separated class names; None: all."),
        "min_score": Param(0.0, type="number", minimum=0, maximum=1),
        "model_version": Param(None, type=["null", "string"]),
        "latest": Param(True, type="boolean", description="Newest matching transaction per image only."),
        "include_empty": Param(True, type="boolean", description="Keep transactions without boxes."),
        "val_fraction": Param(0.2, type="number", minimum=0, maximum=1),
        "labels": Param(None, type=["null", "string"], enum=[None, "reviewed", "predicted", "both"],
                        description="reviewed, predicted or both; None: reviewed when any review exists."),
    },
    tags=["stage5"],
    doc_md=__doc__,
) as dag:
    CxrNotebookOperator(
        task_id="export_coco_mart",
        notebook="mart_export",
        parameters={
            "out_dir": "{{ params.out_dir or var.value.get('cxr_mart_dir', 'var/mart') ~ '/' ~ cxr_run_date(logical_date or dag_run.run_after) }}",
            "since": "{{ params.since }}",
            "until": "{{ params.until or macros.ds_add((logical_date or dag_run.run_after).strftime('%Y-%m-%d'), 1) }}",
            "classes": "{{ params.classes }}",
            "min_score": "{{ params.min_score }}",
            "model_version": "{{ params.model_version }}",
            "latest": "{{ params.latest }}",
            "include_empty": "{{ params.include_empty }}",
            "val_fraction": "{{ params.val_fraction }}",
            "labels": "{{ params.labels }}",
        },
    )
