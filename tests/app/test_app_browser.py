"""The dashboard in real Chromium (Debian's /usr/bin/chromium) driven by Playwright, with the real model.

Voila serves notebooks/dashboard.ipynb through `cxr dashboard` on a free loopback port, with the
embedded stores (SQLite + local lake) in this test's tmp dir. The upload widget has no
<input type=file>: the file chooser is opened by clicking it (FIELD-GUIDE).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def models_dir():
    from ingest_factory import require_model

    return require_model()


@pytest.fixture
def dashboard(tmp_path, models_dir):
    from dashboard_server import dashboard_env, serve
    from people_factory import user

    from cxr.stores.db import make_engine, upgrade

    data = tmp_path / "var"
    engine = make_engine(f"sqlite:///{data / 'cxr.db'}")
    upgrade(engine)
    user(engine, "uploader1", "uploader")  # every page needs a sign-in (issue 14)
    engine.dispose()
    with serve(tmp_path, dashboard_env(tmp_path, models_dir)) as (url, log):
        yield {"url": url, "data": data, "log": log}


@pytest.fixture
def page():
    from dashboard_server import chromium

    with chromium() as browser:
        pg = browser.new_page(viewport={"width": 1400, "height": 1000})
        pg.set_default_timeout(60_000)
        yield pg


def _upload(page, path: Path) -> None:
    with page.expect_file_chooser() as chooser:
        page.click(".widget-upload")
    chooser.value.set_files(str(path))


def _findings(page) -> int:
    return int(page.get_attribute(".cxr-findings", "data-n"))


def _set_slider(page, index: int, value: float) -> None:
    """Type a value into the slider's editable readout (0: score, 1: NMS) and press Enter."""
    readout = page.locator(".widget-slider .widget-readout").nth(index)
    readout.click()
    page.keyboard.press("Control+A")
    page.keyboard.type(f"{value:.2f}")
    page.keyboard.press("Enter")


def _counts(data: Path) -> tuple[int, int, int]:
    with sqlite3.connect(data / "cxr.db") as conn:
        return tuple(conn.execute(f'SELECT COUNT(*) FROM "{t}"').fetchone()[0]  # noqa: S608 - fixed names
                     for t in ("image", "transaction", "pred_bounding_box"))


def _lake(data: Path) -> list[str]:
    root = data / "lake"
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()) if root.exists() else []


def test_upload_png_and_dicom_move_thresholds_and_reject_bad_file(dashboard, page, tmp_path):
    from cxr.model.phantoms import generate_phantom, write_dicom, write_png

    png = write_png(generate_phantom(101, size=512), tmp_path / "in" / "phantom.png")
    dcm = write_dicom(generate_phantom(102, size=512), tmp_path / "in" / "phantom.dcm", photometric="MONOCHROME1")
    bad = tmp_path / "in" / "bad.png"
    bad.write_bytes(b"this is not an image")

    from dashboard_server import browser_login
    from people_factory import PASSWORD

    browser_login(page, dashboard["url"], "uploader1", PASSWORD)
    page.wait_for_selector(".widget-upload", timeout=240_000)  # kernel start + model load
    assert "not for clinical use" in page.inner_text(".cxr-note")

    _upload(page, png)
    page.wait_for_selector(".cxr-saved[data-transaction='1']", timeout=120_000)
    assert "inference" in page.inner_text(".cxr-timing")
    annotated_before = page.locator(".widget-image").nth(1).get_attribute("src")

    _set_slider(page, 0, 0.0)
    page.wait_for_selector(".cxr-findings[data-score='0.00']", timeout=30_000)
    low = _findings(page)
    _set_slider(page, 0, 0.95)
    page.wait_for_selector(".cxr-findings[data-score='0.95']", timeout=30_000)
    high = _findings(page)
    assert low > high, (low, high)
    assert page.locator(".widget-image").nth(1).get_attribute("src") != annotated_before
    assert _counts(dashboard["data"])[1] == 1  # moving sliders stores nothing

    _set_slider(page, 0, 0.5)
    page.wait_for_selector(".cxr-findings[data-score='0.50']", timeout=30_000)
    _upload(page, dcm)
    page.wait_for_selector(".cxr-saved[data-transaction='2']", timeout=120_000)
    assert "DICOM" in page.inner_text(".cxr-timing")
    images, txns, boxes = _counts(dashboard["data"])
    assert (images, txns) == (2, 2)
    keys = _lake(dashboard["data"])
    assert len([k for k in keys if k.startswith("images/")]) == 2 and any(k.endswith(".dcm") for k in keys)
    assert len([k for k in keys if k.startswith("renditions/")]) == 2
    assert page.get_attribute(".cxr-history", "data-n") == "2"

    # a DICOM larger than tornado's default 10 MiB websocket message limit
    from ingest_factory import gradient, make_dicom

    big = tmp_path / "in" / "big.dcm"
    big.write_bytes(make_dicom(gradient(2600, 2600, bits=16)))
    assert big.stat().st_size > 11 * 1024 * 1024
    _upload(page, big)
    page.wait_for_selector(".cxr-saved[data-transaction='3']", timeout=180_000)
    images, txns, boxes = _counts(dashboard["data"])
    assert (images, txns) == (3, 3)
    keys = _lake(dashboard["data"])

    _upload(page, bad)
    page.wait_for_selector(".cxr-error", timeout=60_000)
    assert "Nothing was stored" in page.inner_text(".cxr-error")
    assert _counts(dashboard["data"]) == (images, txns, boxes)
    assert _lake(dashboard["data"]) == keys


def test_model_is_loaded_once_per_kernel(make_settings, models_dir):
    """Every Dashboard in one kernel (process) shares one loaded predictor."""
    from cxr.app.dashboard import Dashboard
    from cxr.stores.db import engine_from_settings, upgrade

    from people_factory import sign_in

    settings = make_settings(models_dir=models_dir)
    engine = engine_from_settings(settings)
    upgrade(engine)
    sign_in(engine, "uploader")  # the kernel acts for a signed-in user (issue 14)
    a, b = Dashboard.from_settings(settings), Dashboard.from_settings(settings)
    assert a.banner.value == "" and not a.upload.disabled
    assert a.predictor is b.predictor
    assert "synthetic" in a.card.value.lower()
