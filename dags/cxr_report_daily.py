"""Daily pipeline report: counts in every store, classes over time, latest runs, model versions."""

from datetime import timedelta

from airflow.sdk import DAG
from cxr_dag_common import START_DATE, USER_MACROS, CxrNotebookOperator, default_args

with DAG(
    dag_id="cxr_report_daily",
    description="Pipeline report (notebooks/pipeline_report.ipynb)",
    schedule="@daily",
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    default_args=default_args(retries=1, timeout=timedelta(minutes=20)),
    user_defined_macros=USER_MACROS,
    render_template_as_native_obj=True,
    tags=["cxr", "report"],
    doc_md=__doc__,
) as dag:
    CxrNotebookOperator(
        task_id="pipeline_report",
        notebook="pipeline_report",
        parameters={"mart_dir": "{{ var.value.get('cxr_mart_dir', 'var/mart') }}", "latest_runs": 5},
    )
