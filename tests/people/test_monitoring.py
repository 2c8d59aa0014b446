"""Live model monitoring: performance against reviewed labels, and drift (PSI) against the model's
stored reference. A shifted set (gamma-changed phantoms) raises the alert and fails the monitoring
notebook; an in-distribution set does not. Real ONNX model, real ingest, real warehouse."""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pytest
from PIL import Image
from people_factory import OPERATOR, user

from cxr.ingest.pipeline import ingest_files
from cxr.model.drift import FeatureReference, psi
from cxr.model.phantoms import generate_phantom, write_png
from cxr.model.predict import load_predictor
from cxr.monitor import job as monitor
from cxr.monitor.metrics import Reviewed, match_counts, performance_table
from cxr.stores.catalog import Stores
from cxr.stores.db import make_engine, upgrade
from cxr.warehouse import etl


def test_psi_is_small_for_the_same_population_and_large_for_a_shifted_one():
    rng = np.random.default_rng(0)
    ref = FeatureReference.from_values(rng.normal(0.3, 0.02, 2000))
    same, n = psi(ref, rng.normal(0.3, 0.02, 2000))
    shifted, _ = psi(ref, rng.normal(0.36, 0.02, 2000))
    assert n == 2000 and same < 0.02 and shifted > 1.0
    assert np.isnan(psi(ref, [])[0])


def test_match_counts_and_the_performance_table():
    t = datetime(2024, 5, 8, 12)  # a Wednesday
    item = Reviewed("1.0.0", t, 100, 100,
                    pred=((0, 0.9, (10, 10, 30, 30)), (0, 0.8, (11, 11, 31, 31)), (1, 0.7, (50, 50, 70, 70))),
                    truth=((0, (10, 10, 30, 30)), (2, (80, 80, 95, 95))))
    assert match_counts(item) == (1, 2, 1)
    empty = Reviewed("1.0.0", t, 100, 100, pred=(), truth=())
    table = performance_table([item, empty])
    (row,) = table.to_dict("records")
    assert row["week"].isoformat() == "2024-05-06" and row["images"] == 2 and (row["tp"], row["fp"], row["fn"]) == (1, 2, 1)
    assert row["precision"] == pytest.approx(1 / 3) and row["recall"] == pytest.approx(0.5)
    assert 0.0 < row["map50"] <= 1.0


def _phantoms(folder, seeds, gamma: float | None = None):
    for s in seeds:
        p = generate_phantom(s, 512)
        path = write_png(p, folder / f"ph_{s}.png")
        if gamma is not None:  # the same anatomy, another exposure: a shifted population
            a = np.asarray(Image.open(path), np.float32) / 255.0
            Image.fromarray(np.round(255 * a**gamma).astype(np.uint8), "L").save(path)


def _stores(tmp_path, name, make_settings, local_lake, warehouse_db, models_dir):
    engine = make_engine(f"sqlite:///{tmp_path / name}.db")
    upgrade(engine)
    database = warehouse_db.client[f"{warehouse_db.name}_{name}"]
    settings = make_settings(models_dir=models_dir, db_url=str(engine.url), lake_url=local_lake.url,
                             monitor_min_samples=50)
    return Stores.open(settings, engine=engine, lake=local_lake, warehouse=database)


@pytest.mark.integration
@pytest.mark.e2e
def test_shifted_phantoms_raise_the_drift_alert_and_in_distribution_ones_do_not(
        tmp_path, make_settings, local_lake, warehouse_db, models_dir, cli):
    normal = _stores(tmp_path, "normal", make_settings, local_lake, warehouse_db, models_dir)
    shifted = _stores(tmp_path, "shifted", make_settings, local_lake, warehouse_db, models_dir)
    predictor = load_predictor(normal.settings)
    try:
        _phantoms(tmp_path / "normal", range(20_000, 20_100))
        _phantoms(tmp_path / "shifted", range(30_000, 30_060), gamma=0.5)
        for stores, folder in ((normal, "normal"), (shifted, "shifted")):
            ingest_files([tmp_path / folder], stores=stores, predictor=predictor)
            etl.run_incremental(stores=stores)

        ok = monitor.gather(stores=normal)
        assert not ok.drift.empty and set(ok.drift["feature"]) == {"score", "intensity_mean", "intensity_std"}
        assert ok.alerts.empty, ok.drift
        assert "No drift alert" in monitor.alert_markdown(ok)
        monitor.raise_on_alert(ok)  # does not raise

        bad = monitor.gather(stores=shifted)
        assert not bad.alerts.empty and "intensity_mean" in set(bad.alerts["feature"]), bad.drift
        assert "DRIFT ALERT" in monitor.alert_markdown(bad)
        with pytest.raises(Exception, match="model drift"):
            monitor.raise_on_alert(bad)

        # the daily DAG's monitoring task: the notebook fails on the alert, passes without one
        for stores, code in ((shifted, 1), (normal, 0)):
            env = {"CXR_DB_URL": str(stores.engine.url), "CXR_LAKE_URL": local_lake.url,
                   "CXR_WAREHOUSE_URL": "mongodb://%s:%d/?directConnection=true" % stores.warehouse.client.address,
                   "CXR_WAREHOUSE_DB": stores.warehouse.name, "CXR_MODELS_DIR": str(models_dir),
                   "CXR_MONITOR_MIN_SAMPLES": "50"}
            run = cli("notebook", "run", "model_monitoring", "-q", env=env, timeout=600)
            assert run.returncode == code, run.stdout[-2000:] + run.stderr[-2000:]
            mon = cli("monitor", env=env)
            assert mon.returncode == (4 if code else 0) and ("model drift" in mon.stderr) == bool(code)
    finally:
        for stores in (normal, shifted):
            stores.warehouse.client.drop_database(stores.warehouse.name)


@pytest.mark.integration
def test_performance_against_a_perfect_reviewer(tmp_path, make_settings, local_lake, warehouse_db, models_dir, cli):
    from cxr.model.classes import SEED_CLASSES
    from cxr.review.importer import import_vindr

    stores = _stores(tmp_path, "perf", make_settings, local_lake, warehouse_db, models_dir)
    try:
        cli("phantoms", "12", tmp_path / "ph", "--seed", "40000", check=True)
        predictor = load_predictor(stores.settings)
        ingest_files([tmp_path / "ph" / "images"], stores=stores, predictor=predictor)
        user(stores.engine, "rita", "radiologist")
        import_vindr(stores, tmp_path / "ph" / "labels.csv", tmp_path / "ph" / "images", "rita", SEED_CLASSES,
                     actor=OPERATOR)
        etl.run_incremental(stores=stores)
        report = monitor.gather(stores=stores)
        (row,) = report.performance.to_dict("records")
        assert row["model_version"] == predictor.model_version and row["images"] == 12 and row["reviewed_boxes"] > 0
        assert row["recall"] > 0.8 and row["precision"] > 0.8 and row["map50"] > 0.8  # the demo model on phantoms
    finally:
        stores.warehouse.client.drop_database(stores.warehouse.name)
