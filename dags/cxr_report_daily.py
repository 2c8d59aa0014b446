"""Daily pipeline report: counts in every store, classes over time, latest runs, model versions."""

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
