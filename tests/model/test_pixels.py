"""Serving and training see the same pixels: one DICOM-to-array function for ingest, dashboard and training."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "ingest"))
from ingest_factory import gradient, make_dicom  # noqa: E402

from cxr.ingest.decode import decode_upload  # noqa: E402
from cxr.model.datasets import load_image  # noqa: E402

pytestmark = pytest.mark.unit


def _windowed_dicom() -> bytes:
    """A 12-bit DICOM whose display needs the modality LUT (slope/intercept) and a VOI window."""
    raw = (gradient(bits=16) >> 4).astype(np.uint16)  # 0..4095
    return make_dicom(raw, bits_stored=12, extra={"RescaleSlope": "0.5", "RescaleIntercept": "-100",
                                                  "WindowCenter": "600", "WindowWidth": "800"})


@pytest.mark.parametrize("photometric", ["MONOCHROME2", "MONOCHROME1"])
def test_dicom_with_modality_lut_and_voi_window_gives_the_same_array_when_served_and_trained(
        tmp_path, make_settings, photometric):
    data = _windowed_dicom() if photometric == "MONOCHROME2" else make_dicom(
        (gradient(bits=16) >> 4).astype(np.uint16), bits_stored=12, photometric=photometric,
        extra={"RescaleSlope": "2", "RescaleIntercept": "0", "WindowCenter": "3000", "WindowWidth": "4000"})
    served = decode_upload("x.dcm", data, make_settings()).array
    path = tmp_path / "x.dcm"
    path.write_bytes(data)
    trained = load_image(path)
    assert served.dtype == trained.dtype == np.float32
    np.testing.assert_array_equal(served, trained)
    # the window matters: a plain BitsStored scaling (what training used to read) gives other pixels
    naive = (gradient(bits=16) >> 4).astype(np.float32) / 4095.0
    assert np.abs(served - (naive if photometric == "MONOCHROME2" else 1 - naive)).max() > 0.05


def test_png_and_jpeg_also_read_the_same_way(tmp_path, make_settings):
    from ingest_factory import jpeg_bytes, png_bytes

    for name, data in (("a.png", png_bytes(gradient())), ("b.png", png_bytes(gradient(bits=16))),
                       ("c.jpg", jpeg_bytes(gradient()))):
        (tmp_path / name).write_bytes(data)
        np.testing.assert_array_equal(decode_upload(name, data, make_settings()).array, load_image(tmp_path / name))
