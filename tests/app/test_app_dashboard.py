"""The dashboard's widgets driven from Python (no browser): upload, re-filter, store, history, errors."""

from __future__ import annotations

from datetime import datetime, timezone

import numpy as np
import pytest
from ingest_factory import FakePredictor, count_rows, gradient, lake_keys, make_dicom, png_bytes
from people_factory import sign_in

from cxr.app import render
from cxr.app.dashboard import Dashboard

pytestmark = pytest.mark.unit


@pytest.fixture
def dash(make_settings, sqlite_engine, local_lake):
    session = sign_in(sqlite_engine, "uploader")  # the dashboard acts for a signed-in user (issue 14)
    return Dashboard(make_settings(), predictor=FakePredictor(), engine=sqlite_engine, lake=local_lake,
                     session=session)


def _n_findings(d: Dashboard) -> int:
    return int(d.findings.value.split('data-n="')[1].split('"')[0])


def test_upload_detects_stores_and_shows(dash):
    assert dash.handle_upload("chest.png", png_bytes(gradient(200, 160)))
    assert dash.banner.value == ""
    assert _n_findings(dash) == 2 and len(dash.records) == 2
    assert "Saved as transaction 1" in dash.saved.value
    assert "inference" in dash.timing.value
    assert bytes(dash.original.value).startswith(b"\x89PNG") and bytes(dash.annotated.value).startswith(b"\x89PNG")
    assert bytes(dash.original.value) != bytes(dash.annotated.value)
    assert count_rows(dash.engine) == {"image": 1, "transaction": 1, "pred_bounding_box": 2}
    assert len(lake_keys(dash.lake)) == 2
    assert 'data-n="1"' in dash.history.value and "chest.png" in dash.history.value


def test_sliders_and_toggles_refilter_without_rerunning_the_model(dash):
    dash.handle_upload("a.dcm", make_dicom(gradient(bits=16)))
    runs = dash.predictor.infer_calls
    before = dash.annotated.value
    dash.score.value = 0.2
    assert _n_findings(dash) == 4 and dash.annotated.value != before
    dash.nms.value = 0.95  # overlapping boxes of one class survive a lax NMS
    assert _n_findings(dash) == 5
    dash.toggles["Aortic enlargement"].value = False
    assert _n_findings(dash) == 3
    assert all(r["class_name"] != "Aortic enlargement" for r in dash.records)
    assert dash.predictor.infer_calls == runs
    # moving sliders stores nothing; "Save with these thresholds" stores a new transaction, same image
    assert count_rows(dash.engine)["transaction"] == 1
    res = dash.store_current()
    assert res.transaction_id == 2 and not res.created_image
    assert count_rows(dash.engine) == {"image": 1, "transaction": 2, "pred_bounding_box": 2 + 5}


def test_bad_file_shows_banner_and_stores_nothing(dash):
    assert not dash.handle_upload("evil.png", b"GIF89a not really")
    assert "cxr-error" in dash.banner.value and "Nothing was stored" in dash.banner.value
    assert dash.saved.value == "" and bytes(dash.original.value) == b""
    assert count_rows(dash.engine) == {"image": 0, "transaction": 0, "pred_bounding_box": 0}
    assert lake_keys(dash.lake) == []
    # a good upload afterwards clears the banner
    assert dash.handle_upload("ok.png", png_bytes(gradient()))
    assert dash.banner.value == ""


def test_upload_widget_value_triggers_the_pipeline(dash):
    data = png_bytes(gradient())
    dash.upload.value = ({"name": "w.png", "type": "image/png", "size": len(data), "content": memoryview(data),
                          "last_modified": datetime.now(timezone.utc)},)
    assert "Saved as transaction 1" in dash.saved.value
    assert dash.upload.value == ()  # cleared for the next upload


def test_names_are_escaped_in_html(dash):
    name = "<img src=x onerror=alert(1)>.png"
    dash.handle_upload(name, png_bytes(gradient()))
    assert "<img src=x" not in dash.history.value and "&lt;img src=x" in dash.history.value


def test_model_card_and_synthetic_note_are_visible(dash):
    assert render.NOTE in dash.title.value and "not for clinical use" in render.NOTE
    assert "<h1>Fake detector</h1>" in dash.card.value and "not for clinical use" in dash.card.value


def test_startup_error_disables_upload(make_settings):
    d = Dashboard(make_settings(), startup_error="cannot start: no model")
    assert d.upload.disabled and "no model" in d.banner.value


def test_annotate_draws_in_display_scale():
    base, scale = render.display_image(np.zeros((2000, 1000), np.float32))
    assert base.size == (384, 768) and scale == pytest.approx(0.384)
    png = render.annotate(base, [{"class_id": 0, "class_name": "A", "score": 0.9, "x_min": 100, "y_min": 100,
                                  "x_max": 500, "y_max": 900}], scale)
    from io import BytesIO

    from PIL import Image

    px = np.asarray(Image.open(BytesIO(png)))
    assert tuple(px[round(500 * scale), round(100 * scale) + 1]) == render.colour(0)
