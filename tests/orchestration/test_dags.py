"""The Airflow DAGs: they load, have their tasks and schedules, and run end to end (`airflow dags test`)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
from orch_helpers import REPO, airflow, airflow_python, base_env, load_json_line, seed_predictions

DAGBAG_SUMMARY = r"""
import json
from airflow.dag_processing.dagbag import DagBag
bag = DagBag(dag_folder="dags")
out = {"errors": {k: v.splitlines()[-1] for k, v in bag.import_errors.items()}, "dags": {}}
for dag in bag.dags.values():
    out["dags"][dag.dag_id] = {
        "schedule": str(dag.schedule), "timetable": type(dag.timetable).__name__,
        "max_active_runs": dag.max_active_runs, "catchup": dag.catchup, "params": sorted(dag.params.keys()),
        "tasks": {t.task_id: {"type": type(t).__name__, "retries": t.retries,
                              "timeout": t.execution_timeout.total_seconds() if t.execution_timeout else None,
                              "kernel": getattr(t, "kernel_name", None), "notebook": getattr(t, "notebook", None),
                              "params": sorted(getattr(t, "parameters", None) or {}),
                              "downstream": sorted(t.downstream_task_ids)} for t in dag.tasks},
    }
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def dagbag(airflow_home):
    proc = airflow_python(DAGBAG_SUMMARY, env=base_env(airflow_home))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return load_json_line(proc.stdout)


@pytest.mark.integration
def test_dagbag_loads_every_dag_without_import_errors(dagbag):
    assert dagbag["errors"] == {}
    assert set(dagbag["dags"]) == {"cxr_backup_weekly", "cxr_warehouse_daily", "cxr_mart_export", "cxr_report_daily",
                                   "cxr_lake_loading"}
    for dag in dagbag["dags"].values():
        assert dag["catchup"] is False
        for task in dag["tasks"].values():
            assert task["retries"] >= 1 and task["timeout"] and task["timeout"] <= 3 * 3600
            if task["type"] == "CxrNotebookOperator":
                assert task["kernel"] == "cxr" and (REPO / "notebooks" / f"{task['notebook']}.ipynb").is_file()


@pytest.mark.integration
def test_each_dag_has_its_tasks_and_schedule(dagbag):
    dags = dagbag["dags"]
    backup = dags["cxr_backup_weekly"]
    assert backup["schedule"] == "@weekly" and backup["max_active_runs"] == 1
    assert backup["tasks"]["backup_db_to_lake"]["notebook"] == "backup"
    assert backup["tasks"]["backup_db_to_lake"]["params"] == ["before", "engine", "glue_job_name", "purge"]

    wh = dags["cxr_warehouse_daily"]
    assert wh["schedule"] == "@daily"
    assert set(wh["tasks"]) == {"choose_host", "load_warehouse_local", "load_warehouse_remote"}
    assert wh["tasks"]["choose_host"]["downstream"] == ["load_warehouse_local", "load_warehouse_remote"]
    assert wh["tasks"]["load_warehouse_local"]["notebook"] == "warehouse_etl"
    assert wh["tasks"]["load_warehouse_remote"]["type"] == "SSHOperator"

    mart = dags["cxr_mart_export"]
    assert mart["schedule"] == "None" and mart["timetable"] == "NullTimetable" and "out_dir" in mart["params"]
    assert mart["tasks"]["export_coco_mart"]["notebook"] == "mart_export"
    assert set(mart["tasks"]["export_coco_mart"]["params"]) <= set(mart["params"]) | {"until"}

    report = dags["cxr_report_daily"]
    assert report["schedule"] == "@daily" and report["tasks"]["pipeline_report"]["notebook"] == "pipeline_report"


RENDER_BACKUP = r"""
import json
from airflow.dag_processing.dagbag import DagBag
from airflow.sdk import macros
dag = DagBag(dag_folder="dags/cxr_backup_weekly.py").dags["cxr_backup_weekly"]
task = dag.get_task("backup_db_to_lake")
env = dag.get_template_env()
ctx = {"params": {k: dag.params[k] for k in dag.params}, "ds": "2024-01-10", "macros": macros, **dag.user_defined_macros}
print(json.dumps({k: env.from_string(v).render(**ctx) for k, v in task.parameters.items()}))
"""


@pytest.mark.integration
def test_backup_before_is_the_logical_date_minus_the_retention_setting(airflow_home):
    env = {**base_env(airflow_home), "CXR_RETENTION_DAYS": "7"}
    proc = airflow_python(RENDER_BACKUP, env=env)
    assert load_json_line(proc.stdout) == {"before": "2024-01-03", "purge": True, "engine": None,
                                           "glue_job_name": None}, proc.stderr[-2000:]


@pytest.mark.integration
def test_remote_host_is_chosen_only_when_the_ssh_connection_exists(airflow_home):
    code = (
        "import json, cxr_dag_common as c\n"
        "cmd = c.cxr_remote_command('warehouse_etl', {'mode': 'incremental', 'batch_size': None, 'x': 5},"
        " dag_id='d', logical_date='2024-01-01', task='t', workdir='my dir')\n"
        "print(json.dumps({'ssh': c.ssh_configured(), 'cmd': cmd}))\n"
    )
    without = load_json_line(airflow_python(code, env=base_env(airflow_home)).stdout)
    assert without["ssh"] is False
    assert without["cmd"] == ("cd 'my dir' && .venv/bin/python -m cxr notebook run warehouse_etl -q --dag-id d "
                              "--logical-date 2024-01-01 --task t -p mode incremental -p x 5")
    env = {**base_env(airflow_home), "AIRFLOW_CONN_CXR_SSH": json.dumps({"conn_type": "ssh", "host": "127.0.0.1"})}
    assert load_json_line(airflow_python(code, env=env).stdout)["ssh"] is True


def _record(lake, dag_id: str, day: str, task: str) -> dict:
    key = f"runs/{dag_id}/{day}/{task}.ipynb"
    assert lake.exists(key), f"no run record {key}: {[i.key for i in lake.list('runs/')]}"
    assert lake.exists(key.removesuffix(".ipynb") + ".html")
    return json.loads(lake.get(key))


@pytest.mark.e2e
def test_dags_run_end_to_end_against_the_local_services(airflow_home, services, mariadb_engine, s3_lake,
                                                        warehouse_db, make_settings, tmp_path):
    """backup -> warehouse -> mart, each `airflow dags test`, on MariaDB + S3 + SecantusDB."""
    db_url = mariadb_engine.url.render_as_string(hide_password=False)
    cxr_env = {"CXR_DB_URL": db_url, "CXR_LAKE_URL": f"s3://{s3_lake.bucket}",
               "CXR_S3_ENDPOINT_URL": services["CXR_S3_ENDPOINT_URL"],
               "CXR_WAREHOUSE_URL": services["CXR_WAREHOUSE_URL"], "CXR_WAREHOUSE_DB": warehouse_db.name}
    settings = make_settings(db_url=db_url, lake_url=cxr_env["CXR_LAKE_URL"],
                             s3_endpoint_url=cxr_env["CXR_S3_ENDPOINT_URL"])
    seeded = seed_predictions(mariadb_engine, s3_lake, settings, n=3)
    env = {**base_env(airflow_home), **cxr_env}
    today = datetime.now(timezone.utc).date()
    day, tomorrow = today.isoformat(), (today + timedelta(days=1)).isoformat()

    def dags_test(dag_id: str, conf: dict | None = None) -> None:
        args = ["dags", "test", dag_id, day] + (["-c", json.dumps(conf)] if conf else [])
        proc = airflow(*args, env=env, timeout=900)
        tail = (proc.stdout + proc.stderr)[-4000:]
        assert proc.returncode == 0 and "state=success" in tail, tail

    dags_test("cxr_backup_weekly", {"before": tomorrow, "purge": False})
    nb = _record(s3_lake, "cxr_backup_weekly", day, "backup_db_to_lake")
    assert nb["metadata"]["papermill"]["parameters"] == {"before": tomorrow, "purge": False}
    assert any(i.key.startswith("backup/") for i in s3_lake.list("backup/"))

    dags_test("cxr_warehouse_daily")
    nb = _record(s3_lake, "cxr_warehouse_daily", day, "load_warehouse_local")
    assert nb["metadata"]["papermill"]["parameters"] == {"mode": "incremental"}
    assert warehouse_db["images"].count_documents({}) == len(seeded)

    out_dir = tmp_path / "mart-export"
    dags_test("cxr_mart_export", {"out_dir": str(out_dir)})
    nb = _record(s3_lake, "cxr_mart_export", day, "export_coco_mart")
    injected = nb["metadata"]["papermill"]["parameters"]
    assert injected["out_dir"] == str(out_dir) and injected["until"] == tomorrow and injected["min_score"] == 0.0
    coco = json.loads((out_dir / "annotations" / "instances.json").read_text())
    assert len(coco["images"]) == len(seeded)
    assert len(coco["annotations"]) == sum(r.n_boxes for r in seeded)


@pytest.mark.integration
def test_variables_and_the_db_connection_win_over_the_env(airflow_home):
    """Variable cxr_lake_url beats CXR_LAKE_URL; Connection cxr_db gives the DB URL; other CXR_* pass through."""
    env = {**base_env(airflow_home), "AIRFLOW_VAR_CXR_LAKE_URL": "s3://from-variable",
           "CXR_LAKE_URL": "file:///from-env", "CXR_WAREHOUSE_DB": "from_env",
           "AIRFLOW_CONN_CXR_DB": json.dumps({"conn_type": "mysql", "host": "db.example", "port": 3306,
                                              "schema": "cxr", "login": "u", "password": "p@ss:w/rd"})}
    code = ("import json, cxr_dag_common as c\n"
            "e = c.kernel_environment()\n"
            "print(json.dumps({k: e.get(k) for k in ('CXR_LAKE_URL', 'CXR_WAREHOUSE_DB', 'CXR_DB_URL')}))\n")
    proc = airflow_python(code, env=env)
    assert load_json_line(proc.stdout) == {
        "CXR_LAKE_URL": "s3://from-variable", "CXR_WAREHOUSE_DB": "from_env",
        "CXR_DB_URL": "mysql+pymysql://u:p%40ss%3Aw%2Frd@db.example:3306/cxr?charset=utf8mb4"}, proc.stderr[-2000:]
