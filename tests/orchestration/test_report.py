"""The pipeline report: pure tables on hand-made rows, and the notebook rendering real stores."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import pandas as pd
import pytest
from orch_helpers import REPO, outputs_text, seed_predictions

from cxr import report
from cxr.stores.runs import RunSummary, run_notebook


def _run(task, day, ok=True, duration=2.0, dag="d"):
    return RunSummary(dag, day, task, f"runs/{dag}/{day}/{task}.ipynb", datetime(2024, 1, 1), None, duration, ok, {})


@pytest.mark.unit
def test_class_distribution_counts_per_day_and_class():
    rows = [(datetime(2024, 1, 1, 10), "Nodule/Mass"), (datetime(2024, 1, 1, 23), "Nodule/Mass"),
            (datetime(2024, 1, 1, 5), "ILD"), (datetime(2024, 1, 3, 1), "ILD")]
    t = report.class_distribution(rows)
    assert list(t.columns) == ["ILD", "Nodule/Mass"]
    assert t.loc[pd.Timestamp("2024-01-01")].tolist() == [1, 2]
    assert t.loc[pd.Timestamp("2024-01-03")].tolist() == [1, 0]
    assert report.class_distribution([]).empty
    weekly = report.class_distribution(rows, freq="W")
    assert int(weekly.to_numpy().sum()) == 4


@pytest.mark.unit
def test_counts_table_keeps_unreachable_stores_as_missing():
    t = report.counts_table({"db": {"images": 3, "boxes": 7}, "warehouse": {"images": None}, "mart": {}})
    assert t.values.tolist()[:2] == [["db", "images", 3], ["db", "boxes", 7]]
    assert pd.isna(t.loc[t.store == "warehouse", "count"].iloc[0])


@pytest.mark.unit
def test_model_versions_and_ingest_throughput():
    mv = report.model_versions_table([("v1", 2, None, None), ("v2", 5, None, None)])
    assert mv.model_version.tolist() == ["v2", "v1"]
    tp = report.ingest_throughput([("a", 10, datetime(2024, 1, 1, 0, 0, 0), datetime(2024, 1, 1, 0, 0, 4)),
                                   ("b", 1, datetime(2024, 1, 2), datetime(2024, 1, 2))])
    assert tp.run_id.tolist() == ["b", "a"]
    assert tp.loc[tp.run_id == "a", "images_per_s"].item() == 2.5
    assert pd.isna(tp.loc[tp.run_id == "b", "images_per_s"].item())


@pytest.mark.unit
def test_duration_stats_and_runs_table():
    runs = [_run("t", "2024-01-02", duration=4.0), _run("t", "2024-01-01", ok=False, duration=1.0),
            _run("u", "2024-01-01", duration=None)]
    stats = report.duration_stats(runs).set_index("task")
    assert stats.loc["t", "runs"] == 2 and stats.loc["t", "failed"] == 1
    assert stats.loc["t", "median_s"] == 2.5 and stats.loc["t", "last_s"] == 4.0
    table = report.runs_table(runs)
    assert table.status.tolist() == ["ok", "failed", "ok"] and table.record[0] == "runs/d/2024-01-02/t.ipynb"


@pytest.mark.unit
def test_plot_class_distribution_draws_one_bar_series_per_class():
    import matplotlib

    matplotlib.use("Agg")
    t = report.class_distribution([(datetime(2024, 1, 1), "A"), (datetime(2024, 1, 2), "B")])
    ax = report.plot_class_distribution(t)
    assert len(ax.containers) == 2 and ax.get_legend() is not None
    assert report.plot_class_distribution(report.class_distribution([])).texts[0].get_text() == "no predictions yet"


@pytest.mark.unit
def test_latest_coco(tmp_path):
    for name, n in (("old", 1), ("new", 2)):
        p = tmp_path / name / "annotations" / "instances.json"
        p.parent.mkdir(parents=True)
        p.write_text(json.dumps({"images": [{}] * n, "annotations": [], "categories": [{}]}))
    newest = tmp_path / "new" / "annotations" / "instances.json"
    import os

    os.utime(newest, (2e9, 2e9))
    assert report.latest_coco(tmp_path) == newest
    assert report.coco_counts(newest) == {"images": 2, "annotations": 0, "categories": 1}
    assert report.latest_coco(tmp_path / "none") is None


@pytest.mark.integration
def test_gather_and_the_report_notebook_render(tmp_path, make_settings, services, warehouse_db, monkeypatch):
    """Seeded DB + lake + warehouse: gather counts them; the notebook renders with no error and shows them."""
    from cxr.stores.db import engine_from_settings, upgrade

    monkeypatch.setenv("CXR_WAREHOUSE_URL", services["CXR_WAREHOUSE_URL"])  # the kernel's settings too
    monkeypatch.setenv("CXR_WAREHOUSE_DB", warehouse_db.name)
    warehouse_db["images"].insert_one({"image_id": 1})
    settings = make_settings(warehouse_url=services["CXR_WAREHOUSE_URL"], warehouse_db=warehouse_db.name)
    engine = engine_from_settings(settings)
    upgrade(engine)
    lake_dir = Path(settings.resolved_lake_url.removeprefix("file://"))
    from cxr.stores.lake import LocalLake

    lake = LocalLake(lake_dir)
    results = seed_predictions(engine, lake, settings, n=3)
    n_boxes = sum(r.n_boxes for r in results)
    engine.dispose()

    r = report.gather(settings, mart_dir=tmp_path / "mart")
    assert r.counts["db"] == {"images": 3, "transactions": 3, "boxes": n_boxes}
    assert len(r.box_rows) == n_boxes and r.model_rows[0][:2] == ("test-1", 3)
    assert r.counts["warehouse"]["images"] == 1

    monkeypatch.chdir(tmp_path)
    rec = run_notebook("pipeline_report", {"mart_dir": str(tmp_path / "mart")}, lake=lake, dag_id="test",
                       logical_date="2024-01-01", task="pipeline_report", notebooks_dir=REPO / "notebooks",
                       cwd=tmp_path)
    assert rec.ok, rec.error
    nb = json.loads(lake.get(rec.key))
    text = outputs_text(nb)
    assert "test-1" in text and "ERROR" not in text
    assert any("image/png" in o.get("data", {}) for c in nb["cells"] for o in c.get("outputs", []))
    assert f"{n_boxes}" in text
