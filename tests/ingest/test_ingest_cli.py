"""`cxr predict` and `cxr ingest` end to end, in a subprocess, with the real ONNX model."""

from __future__ import annotations

import json

import pytest
from ingest_factory import make_dicom, require_model

from cxr.model.phantoms import fake_patient, generate_phantom, write_dicom, write_png

pytestmark = pytest.mark.e2e


@pytest.fixture
def model_env(make_settings):
    from cxr.stores.db import engine_from_settings, upgrade

    upgrade(engine_from_settings(make_settings()))  # the embedded SQLite of this test's data_dir
    return {"CXR_MODELS_DIR": str(require_model())}


def test_predict_json_stores_nothing(run_cxr, model_env, tmp_path, make_settings):
    png = write_png(generate_phantom(5, size=256), tmp_path / "p.png")
    res = run_cxr("predict", png, "--score-thr", "0.3", "--json", env=model_env)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert out["score_thr"] == 0.3 and "not for clinical use" in out["note"]
    (item,) = out["results"]
    assert item["width"] == 256 and item["format"] == "png"
    assert all(f["score"] > 0.3 and f["class_name"] for f in item["findings"])
    assert not (make_settings().data_dir / "lake").exists() or not any((make_settings().data_dir / "lake").rglob("*.png"))


def test_ingest_batch_reports_rejects_and_exits_nonzero(run_cxr, model_env, tmp_path, make_settings):
    d = tmp_path / "batch"
    write_png(generate_phantom(1, size=256), d / "a.png")
    write_dicom(generate_phantom(2, size=256), d / "b.dcm")
    (d / "c.dcm").write_bytes(make_dicom(no_pixels=True))
    (d / "d.png").write_bytes(b"nope")
    res = run_cxr("ingest", d, "--json", "--no-progress", env=model_env)
    assert res.returncode == 3, res.stderr
    lines = [ln for ln in res.stderr.splitlines() if ln.startswith("cxr: rejected")]
    assert len(lines) == 2 and any("no pixel data" in ln for ln in lines) and any("d.png" in ln for ln in lines)
    assert "Traceback" not in res.stderr
    summary = json.loads(res.stdout)
    assert summary["n_stored"] == 2 and summary["n_rejected"] == 2 and summary["n_new_images"] == 2
    # PHI of the DICOM never reaches the output
    for value in fake_patient(2).values():
        if len(value) >= 5:
            assert value not in res.stdout and value not in res.stderr
    # the same files again: the same two images, two more transactions; all good -> exit 0
    again = run_cxr("ingest", d / "a.png", d / "b.dcm", "--no-progress", env=model_env)
    assert again.returncode == 0, again.stderr
    assert "stored 2 prediction(s) (0 new image(s)), rejected 0" in again.stdout
    settings = make_settings()
    from ingest_factory import count_rows

    from cxr.stores.db import engine_from_settings

    counts = count_rows(engine_from_settings(settings))
    assert counts["image"] == 2 and counts["transaction"] == 4


def test_ingest_without_schema_says_what_to_do(run_cxr, tmp_path):
    env = {"CXR_MODELS_DIR": str(require_model()), "CXR_DATA_DIR": str(tmp_path / "fresh")}
    png = write_png(generate_phantom(1, size=128), tmp_path / "a.png")
    res = run_cxr("ingest", png, env=env)
    assert res.returncode == 2 and "cxr db upgrade" in res.stderr and "Traceback" not in res.stderr
