"""Shared wiring of the cxr DAGs: the notebook operator, settings lookup, defaults.

The DAG files only say which notebook runs when with which parameters; this module says how:

* :class:`CxrNotebookOperator` is Airflow's ``PapermillOperator`` on the ``cxr`` kernel. It writes
  the executed notebook to the lake as the run record ``runs/<dag_id>/<logical date>/<task>.ipynb``
  (cxr.runs) and an HTML copy beside it, also when a cell fails. The kernel runs in the project
  folder with the ``CXR_*`` settings resolved below in its environment.
* Settings come, highest first, from Airflow Variables ``cxr_<field>`` (e.g. ``cxr_lake_url``),
  the Airflow Connection ``cxr_db`` (for the DB URL), the ``CXR_*`` environment of the Airflow
  worker, the project's ``.env``, then cxr's embedded defaults (relative to the project folder,
  where the kernel runs: ``var/``, ``models/``).
* The project folder is ``CXR_PROJECT_DIR`` or the folder above ``dags/``.

Airflow's environment does not have cxr's dependencies, only what ``cxr.runs`` and ``cxr.config``
need (pydantic-settings comes with Airflow), so ``lib/`` is put on ``sys.path`` here.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import sys
from datetime import datetime, timedelta
from pathlib import Path

PROJECT_DIR = Path(os.environ.get("CXR_PROJECT_DIR") or Path(__file__).resolve().parent.parent).resolve()
NOTEBOOKS_DIR = PROJECT_DIR / "notebooks"
if str(PROJECT_DIR / "lib") not in sys.path:
    sys.path.insert(0, str(PROJECT_DIR / "lib"))

from airflow.providers.papermill.operators.papermill import PapermillOperator  # noqa: E402

from cxr.runs import KERNEL_NAME, format_logical_date, lake_object_uri, record_key, write_html_beside  # noqa: E402

#: A fixed past start date: schedules begin here; catchup is off, so only the latest interval runs.
START_DATE = datetime(2024, 1, 1)

#: Settings a Variable ``cxr_<name>`` may set (the same names as cxr.config.Settings fields).
VARIABLE_SETTINGS = (
    "data_dir", "db_url", "lake_url", "s3_endpoint_url", "s3_region", "aws_profile",
    "warehouse_url", "warehouse_db", "warehouse_tls_ca_file", "warehouse_batch_size",
    "models_dir", "model_name", "model_version", "retention_days", "glue_job_name",
    "ssh_host", "ssh_port", "ssh_user", "ssh_key_file", "ssh_known_hosts", "ssh_remote_workdir",
)
DB_CONNECTION_ID = "cxr_db"
SSH_CONNECTION_ID = "cxr_ssh"


def default_args(*, retries: int = 2, timeout: timedelta = timedelta(hours=1)) -> dict:
    """Retries and a timeout for every task of a DAG."""
    return {
        "owner": "cxr",
        "retries": retries,
        "retry_delay": timedelta(minutes=5),
        "retry_exponential_backoff": 2.0,
        "execution_timeout": timeout,
        "email_on_failure": False,
        "email_on_retry": False,
    }


def cxr_dag(dag_id: str, *, schedule: str | None, description: str, doc_md: str | None, tags: list[str],
            retries: int, timeout: timedelta, params: dict | None = None):  # noqa: ANN201 - airflow.sdk.DAG
    """A DAG with the project's conventions: fixed start, no catch-up, one active run, retries and a
    timeout on every task, the cxr template macros, and native rendering (numbers/None stay typed)."""
    from airflow.sdk import DAG

    return DAG(
        dag_id=dag_id, description=description, schedule=schedule, start_date=START_DATE, catchup=False,
        max_active_runs=1, default_args=default_args(retries=retries, timeout=timeout), params=params or {},
        user_defined_macros=USER_MACROS, render_template_as_native_obj=True, tags=["cxr", *tags], doc_md=doc_md,
    )


def _variable(name: str) -> str | None:
    from airflow.sdk import Variable

    try:
        value = Variable.get(f"cxr_{name}", default=None)
    except Exception:  # noqa: BLE001 - no metadata DB / API at parse time: fall back to env
        return None
    return None if value in (None, "") else str(value)


def _connection_db_url() -> str | None:
    """``mysql+pymysql://...`` from the Airflow Connection ``cxr_db`` when there is one."""
    from urllib.parse import quote

    from airflow.sdk import Connection

    try:
        conn = Connection.get(DB_CONNECTION_ID)
    except Exception:  # noqa: BLE001 - not defined: not an error, the env or default applies
        return None
    if conn.conn_type in ("mysql", "mariadb"):
        auth = f"{quote(conn.login or '', safe='')}:{quote(conn.password or '', safe='')}@" if conn.login else ""
        return f"mysql+pymysql://{auth}{conn.host}:{conn.port or 3306}/{conn.schema}?charset=utf8mb4"
    if conn.conn_type == "sqlite":
        return f"sqlite:///{conn.host}"
    return conn.get_uri()


def kernel_environment(base: dict[str, str] | None = None) -> dict[str, str]:
    """The ``CXR_*`` environment for a notebook kernel (and papermill's S3 writes)."""
    env = dict(os.environ if base is None else base)
    for name in VARIABLE_SETTINGS:
        value = _variable(name)
        if value is not None:
            env[f"CXR_{name.upper()}"] = value
    db_url = _connection_db_url()
    if db_url and not _variable("db_url"):
        env["CXR_DB_URL"] = db_url
    if env.get("CXR_S3_ENDPOINT_URL"):  # papermill's S3 handler, and boto3 itself
        env.setdefault("BOTO3_ENDPOINT_URL", env["CXR_S3_ENDPOINT_URL"])
        env.setdefault("AWS_ENDPOINT_URL_S3", env["CXR_S3_ENDPOINT_URL"])
    return env


@contextlib.contextmanager
def _in_project(env: dict[str, str]):
    """Run with ``env`` as the process environment and the project as working directory."""
    old_env, old_cwd = dict(os.environ), os.getcwd()
    os.environ.clear()
    os.environ.update(env)
    os.chdir(PROJECT_DIR)
    try:
        yield
    finally:
        os.chdir(old_cwd)
        os.environ.clear()
        os.environ.update(old_env)


def cxr_setting(name: str):  # noqa: ANN201 - the setting's value
    """A cxr setting as the notebook kernel will see it (Variables, Connection, env, .env, defaults)."""
    from cxr.config import load_settings

    with _in_project(kernel_environment()):
        return getattr(load_settings(), name)


def run_date(context) -> str:  # noqa: ANN001 - Airflow Context
    """The ``<logical date>`` of the run: its logical date, or when it ran for a manual run without one."""
    when = context.get("logical_date") or context["dag_run"].run_after
    return format_logical_date(when)


def lake_url_for(env: dict[str, str]) -> str:
    """The lake URL the settings in ``env`` resolve to (cxr.config rules, project .env included)."""
    from cxr.config import load_settings

    with _in_project(env):
        return load_settings().resolved_lake_url


class CxrNotebookOperator(PapermillOperator):
    """Run ``notebooks/<notebook>.ipynb`` on the ``cxr`` kernel; keep the record in the lake.

    ``parameters`` are templated (render the DAG with ``render_template_as_native_obj=True`` so
    numbers and None stay what they are). A parameter whose value is None is not injected: the
    notebook's own default applies.
    """

    ui_color = "#dbeafe"

    def __init__(self, *, notebook: str, parameters: dict | None = None, **kwargs) -> None:
        super().__init__(input_nb=str(NOTEBOOKS_DIR / f"{notebook}.ipynb"), output_nb=None,
                         parameters=parameters or {}, kernel_name=KERNEL_NAME, language_name="python",
                         log_output=True, **kwargs)
        self.notebook = notebook

    def execute(self, context):  # noqa: ANN001, ANN201
        env = kernel_environment()
        key = record_key(self.dag_id, run_date(context), self.task_id)
        self.output_nb = lake_object_uri(lake_url_for(env), key)
        self.parameters = {k: v for k, v in (self.parameters or {}).items() if v is not None}
        self.log.info("notebook %s, parameters %s, record %s", self.input_nb, self.parameters, self.output_nb)
        with _in_project(env):
            if not self.output_nb.startswith("s3://"):
                Path(self.output_nb).parent.mkdir(parents=True, exist_ok=True)
            try:
                return super().execute(context)
            finally:
                self._write_html()

    def _write_html(self) -> None:
        url = self.output_nb.url if hasattr(self.output_nb, "url") else self.output_nb
        try:
            self.log.info("HTML copy: %s", write_html_beside(url, report_mode=True))
        except Exception as exc:  # noqa: BLE001 - no record to render (kernel never started): say so
            self.log.warning("no HTML copy of %s: %s", url, exc)


def remote_notebook_command(notebook: str, parameters: dict, *, dag_id: str, logical_date: str, task: str,
                            workdir: str = "cxr") -> str:
    """The shell command an SSH host runs: ``cxr notebook run`` in its project checkout.

    The remote host stores the run record in the lake itself (its own ``CXR_*`` settings).
    """
    import json

    args = [".venv/bin/cxr", "notebook", "run", notebook, "-q", "--dag-id", dag_id,
            "--logical-date", logical_date, "--task", task]
    for key, value in parameters.items():
        if value is not None:
            args += ["-p", key, value if isinstance(value, str) else json.dumps(value)]
    return f"cd {shlex.quote(workdir)} && " + " ".join(shlex.quote(a) for a in args)


def ssh_configured() -> bool:
    """True when the Airflow Connection ``cxr_ssh`` exists (the remote ETL host)."""
    from airflow.sdk import Connection

    try:
        Connection.get(SSH_CONNECTION_ID)
    except Exception:  # noqa: BLE001 - not defined
        return False
    return True


#: Jinja helpers the DAGs use in their templates.
USER_MACROS = {"cxr_run_date": format_logical_date, "cxr_remote_command": remote_notebook_command,
               "cxr_setting": cxr_setting}
