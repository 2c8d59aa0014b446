"""Shared wiring of the cxr DAGs: the notebook operator, settings lookup, defaults.

The DAG files only say which notebook runs when with which parameters; this module says how:

* :class:`CxrNotebookOperator` is Airflow's ``PapermillOperator`` on the ``cxr`` kernel. It executes
  into a temporary file, then stores the run record ``runs/<dag_id>/<logical date>/<task>.ipynb``
  and its HTML copy with cxr's one record writer (:func:`cxr.stores.runs.write_record`), also when
  a cell fails. The kernel runs in the project folder with the ``CXR_*`` settings resolved below
  in its environment.
* Settings come, highest first, from Airflow Variables ``cxr_<field>`` (e.g. ``cxr_lake_url``; every
  field of :class:`cxr.config.Settings`), the Airflow Connection ``cxr_db`` (for the DB URL), the
  ``CXR_*`` environment of the Airflow worker, the project's ``.env``, then cxr's embedded defaults
  (relative to the project folder, where the kernel runs: ``var/``, ``models/``).
* The project folder is ``CXR_PROJECT_DIR`` or the folder above ``dags/``.

Airflow's environment does not have cxr's dependencies, only what ``cxr.config``,
``cxr.stores.layout``, ``cxr.stores.runs`` and the lake adapter need (pydantic-settings, boto3
and papermill come with Airflow and its providers), so ``lib/`` is put on ``sys.path`` here.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from datetime import datetime, timedelta
from pathlib import Path
from urllib.parse import quote

PROJECT_DIR = Path(os.environ.get("CXR_PROJECT_DIR") or Path(__file__).resolve().parent.parent).resolve()
NOTEBOOKS_DIR = PROJECT_DIR / "notebooks"
if str(PROJECT_DIR / "lib") not in sys.path:
    sys.path.insert(0, str(PROJECT_DIR / "lib"))

from airflow.providers.papermill.operators.papermill import PapermillOperator  # noqa: E402
from airflow.sdk import DAG, Connection, Context, Variable  # noqa: E402

from cxr.config import Settings, load_settings, setting_names  # noqa: E402
from cxr.stores.lake import open_lake  # noqa: E402
from cxr.stores.layout import format_logical_date, record_key  # noqa: E402
from cxr.stores.runs import KERNEL_NAME, lake_object_uri, remote_notebook_command, write_record  # noqa: E402

#: A fixed past start date: schedules begin here; catchup is off, so only the latest interval runs.
START_DATE = datetime(2024, 1, 1)

#: Settings a Variable ``cxr_<name>`` may set: every field of cxr.config.Settings.
VARIABLE_SETTINGS = setting_names()
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
            retries: int, timeout: timedelta, params: dict | None = None) -> DAG:
    """A DAG with the project's conventions: fixed start, no catch-up, one active run, retries and a
    timeout on every task, the cxr template macros, and native rendering (numbers/None stay typed)."""
    return DAG(
        dag_id=dag_id, description=description, schedule=schedule, start_date=START_DATE, catchup=False,
        max_active_runs=1, default_args=default_args(retries=retries, timeout=timeout), params=params or {},
        user_defined_macros=USER_MACROS, render_template_as_native_obj=True, tags=["cxr", *tags], doc_md=doc_md,
    )


def _variable(name: str) -> str | None:
    try:
        value = Variable.get(f"cxr_{name}", default=None)
    except Exception:  # noqa: BLE001 - no metadata DB / API at parse time: fall back to env
        return None
    return None if value in (None, "") else str(value)


def _connection_db_url() -> str | None:
    """``mysql+pymysql://...`` from the Airflow Connection ``cxr_db`` when there is one."""
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
    """The ``CXR_*`` environment for a notebook kernel."""
    env = dict(os.environ if base is None else base)
    for name in VARIABLE_SETTINGS:
        value = _variable(name)
        if value is not None:
            env[f"CXR_{name.upper()}"] = value
    db_url = _connection_db_url()
    if db_url and not _variable("db_url"):
        env["CXR_DB_URL"] = db_url
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


def kernel_settings(env: dict[str, str] | None = None) -> Settings:
    """The settings the notebook kernel will see (Variables, Connection, env, .env, defaults)."""
    with _in_project(kernel_environment() if env is None else env):
        return load_settings()


def cxr_setting(name: str) -> object:
    """One cxr setting as the notebook kernel will see it."""
    return getattr(kernel_settings(), name)


def run_date(context: Context) -> str:
    """The ``<logical date>`` of the run: its logical date, or when it ran for a manual run without one."""
    when = context.get("logical_date") or context["dag_run"].run_after
    return format_logical_date(when)


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

    def execute(self, context: Context) -> str:
        env = kernel_environment()
        settings = kernel_settings(env)
        key = record_key(self.dag_id, run_date(context), self.task_id)
        lake = open_lake(settings.resolved_lake_url, endpoint_url=settings.s3_endpoint_url,
                         region=settings.s3_region, profile=settings.aws_profile)
        self.parameters = {k: v for k, v in (self.parameters or {}).items() if v is not None}
        with tempfile.TemporaryDirectory(prefix="cxr-airflow-") as tmp, _in_project(env):
            self.output_nb = str(Path(tmp) / f"{self.task_id}.ipynb")
            self.log.info("notebook %s, parameters %s, record %s", self.input_nb, self.parameters, lake.uri(key))
            try:
                super().execute(context)
            finally:
                executed = Path(str(getattr(self.output_nb, "url", self.output_nb)))
                if executed.is_file():  # no record when the kernel never started
                    write_record(executed, key, lake.put, report_mode=True)
        return lake_object_uri(settings.resolved_lake_url, key)


def cxr_remote_command(notebook: str, parameters: dict, *, dag_id: str, logical_date: str, task: str,
                       workdir: str | None = None) -> str:
    """The command an SSH host runs for ``notebook`` (cxr's one builder; the host stores the record)."""
    s = kernel_settings()
    return remote_notebook_command(notebook, parameters, python=s.ssh_remote_python, dag_id=dag_id,
                                   logical_date=logical_date, task=task, workdir=workdir or s.ssh_remote_workdir)


def ssh_configured() -> bool:
    """True when the Airflow Connection ``cxr_ssh`` exists (the remote ETL host)."""
    try:
        Connection.get(SSH_CONNECTION_ID)
    except Exception:  # noqa: BLE001 - not defined
        return False
    return True


#: Jinja helpers the DAGs use in their templates.
USER_MACROS = {"cxr_run_date": format_logical_date, "cxr_remote_command": cxr_remote_command,
               "cxr_setting": cxr_setting}
