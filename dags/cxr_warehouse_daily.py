"""Stage 4, daily: load new DB transactions into the warehouse (one document per image).

Runs notebooks/warehouse_etl.ipynb here, or, when the Airflow Connection ``cxr_ssh`` exists,
``cxr notebook run warehouse_etl`` on that host over SSH (its checkout and Python: the settings
``ssh_remote_workdir`` and ``ssh_remote_python``, e.g. Variables ``cxr_ssh_remote_workdir``), which
stores the run record in the lake itself. The command is cxr's one builder, the same
``cxr warehouse --via-ssh`` runs.
"""

from datetime import timedelta

from airflow.providers.ssh.operators.ssh import SSHOperator
from airflow.sdk import Param, task
from cxr_dag_common import SSH_CONNECTION_ID, CxrNotebookOperator, cxr_dag, ssh_configured

TIMEOUT = timedelta(hours=1)

with cxr_dag(
    "cxr_warehouse_daily",
    description="Stage 4: DB -> warehouse documents, here or on the SSH host",
    schedule="@daily",
    retries=2,
    timeout=TIMEOUT,
    params={
        "mode": Param("incremental", type="string", description="incremental (since the watermark) or rebuild."),
        "batch_size": Param(None, type=["null", "integer"], description="Documents per bulk write; None: CXR_WAREHOUSE_BATCH_SIZE."),
    },
    tags=["stage4"],
    doc_md=__doc__,
) as dag:

    @task.branch(task_id="choose_host")
    def choose_host() -> str:
        """The SSH host when the cxr_ssh connection exists, else this worker."""
        return "load_warehouse_remote" if ssh_configured() else "load_warehouse_local"

    parameters = {"mode": "{{ params.mode }}", "batch_size": "{{ params.batch_size }}"}
    local = CxrNotebookOperator(task_id="load_warehouse_local", notebook="warehouse_etl", parameters=parameters)
    remote = SSHOperator(
        task_id="load_warehouse_remote",
        ssh_conn_id=SSH_CONNECTION_ID,
        command=(
            "{{ cxr_remote_command('warehouse_etl', {'mode': params.mode, 'batch_size': params.batch_size},"
            " dag_id=dag.dag_id, logical_date=cxr_run_date(logical_date or dag_run.run_after),"
            " task=task.task_id) }}"
        ),
        cmd_timeout=int(TIMEOUT.total_seconds()),
    )
    choose_host() >> [local, remote]
