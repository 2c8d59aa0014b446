"""Daily pipeline report (counts, classes over time, latest runs, model versions, the model monitor), and the
model monitoring task, which fails when the model's inputs or scores drift past CXR_DRIFT_THRESHOLD."""

from datetime import timedelta

from cxr_dag_common import CxrNotebookOperator, cxr_dag

# DagBag's safe mode reads files naming both "airflow" and "DAG": this one is an Airflow DAG file.
with cxr_dag(
    "cxr_report_daily",
    description="Pipeline report (notebooks/pipeline_report.ipynb)",
    schedule="@daily",
    retries=1,
    timeout=timedelta(minutes=20),
    tags=["report"],
    doc_md=__doc__,
) as dag:
    CxrNotebookOperator(
        task_id="pipeline_report",
        notebook="pipeline_report",
        parameters={"mart_dir": "{{ var.value.get('cxr_mart_dir', 'var/mart') }}", "latest_runs": 5},
    )
    # Its own task, so that a drift alert fails it (Airflow alerts) while the report still renders.
    CxrNotebookOperator(
        task_id="model_monitoring",
        notebook="model_monitoring",
        parameters={"fail_on_alert": True},
    )
