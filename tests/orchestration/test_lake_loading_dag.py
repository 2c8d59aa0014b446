"""The hourly lake-loading DAG: notebooks/lake_loading.ipynb through PapermillOperator in `airflow dags test`."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest
from orch_helpers import airflow, airflow_python, base_env, load_json_line, outputs_text

DAG_SUMMARY = r"""
import json
from airflow.dag_processing.dagbag import DagBag
dag = DagBag(dag_folder="dags/cxr_lake_loading.py").dags["cxr_lake_loading"]
task = dag.get_task("load_drop")
print(json.dumps({"schedule": str(dag.schedule), "params": sorted(dag.params.keys()), "notebook": task.notebook,
                  "kernel": task.kernel_name, "parameters": sorted(task.parameters), "retries": task.retries,
                  "timeout": task.execution_timeout.total_seconds(), "max_active_runs": dag.max_active_runs}))
"""


@pytest.mark.integration
def test_the_lake_loading_dag_is_hourly_and_wires_the_notebook(airflow_home):
    proc = airflow_python(DAG_SUMMARY, env=base_env(airflow_home))
    assert load_json_line(proc.stdout) == {
        "schedule": "@hourly", "params": ["pattern", "source"], "notebook": "lake_loading", "kernel": "cxr",
        "parameters": ["pattern", "run_id", "source"], "retries": 2, "timeout": 3000.0, "max_active_runs": 1,
    }, proc.stderr[-2000:]


@pytest.mark.e2e
def test_lake_loading_runs_through_papermill_in_airflow_dags_test(airflow_home, services, mariadb_engine, s3_lake,
                                                                 tmp_path):
    from sqlalchemy import func, select

    from cxr.model.phantoms import generate_phantom, write_dicom, write_png
    from cxr.stores.schema import image, transaction

    drop = tmp_path / "pacs-export"
    for seed in range(5):
        write_png(generate_phantom(700 + seed, size=128), drop / f"img_{seed}.png")
    write_dicom(generate_phantom(705, size=128), drop / "study" / "one.dcm")
    (drop / "notes.txt").write_text("not an image")
    env = {**base_env(airflow_home), "CXR_DB_URL": mariadb_engine.url.render_as_string(hide_password=False),
           "CXR_LAKE_URL": f"s3://{s3_lake.bucket}", "CXR_S3_ENDPOINT_URL": services["CXR_S3_ENDPOINT_URL"],
           "CXR_LOADING_SOURCE": str(drop)}
    day = datetime.now(timezone.utc).date().isoformat()

    def dags_test(conf: dict | None = None) -> dict:  # (the second hourly run reading only new files: test_lake_loading)
        args = ["dags", "test", "cxr_lake_loading", day] + (["-c", json.dumps(conf)] if conf else [])
        proc = airflow(*args, env=env, timeout=900)
        tail = (proc.stdout + proc.stderr)[-4000:]
        assert proc.returncode == 0 and "state=success" in tail, tail
        key = f"runs/cxr_lake_loading/{day}/load_drop.ipynb"
        assert s3_lake.exists(key) and s3_lake.exists(key.removesuffix(".ipynb") + ".html")
        return json.loads(s3_lake.get(key))

    nb = dags_test()
    assert nb["metadata"]["papermill"]["parameters"] == {"run_id": f"lake-{day}"}
    text = outputs_text(nb)
    assert "ERROR" not in text, text[max(0, text.find("ERROR") - 500):text.find("ERROR") + 500]
    assert "unsupported file type '.txt'" in text and "Nodule/Mass" in text
    assert any("image/png" in o.get("data", {}) for c in nb["cells"] for o in c.get("outputs", []))  # the plot
    with mariadb_engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(image)).scalar_one() == 6
        assert set(conn.execute(select(transaction.c.run_id)).scalars()) == {f"lake-{day}"}
    assert len([o for o in s3_lake.list("loading/")]) == 1  # the drop's manifest part
