"""Decoding: PNG/JPEG via Pillow, DICOM via pydicom (compressed syntaxes, MONOCHROME1, rescale, VOI)."""

from __future__ import annotations

import io

import numpy as np
import pydicom
import pytest
from ingest_factory import (
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    RLELossless,
    gradient,
    jpeg_bytes,
    make_dicom,
    png_bytes,
)
from PIL import Image

from cxr.ingest.decode import decode_upload

pytestmark = pytest.mark.unit


def test_png_8bit_is_normalized(settings):
    px = gradient(bits=8)
    up = decode_upload("a.png", png_bytes(px), settings)
    assert up.source_format == "png" and up.extension == "png"
    assert up.array.dtype == np.float32 and up.array.shape == px.shape == (up.height, up.width)
    np.testing.assert_allclose(up.array, px / 255.0, atol=1e-6)
    assert up.stored_bytes == png_bytes(px)  # PNG is stored as uploaded
    assert up.image_key == f"images/{up.sha256[:2]}/{up.sha256}.png"
    assert up.rendition_key == f"renditions/{up.sha256[:2]}/{up.sha256}.png"


def test_png_16bit_keeps_its_precision(settings):
    px = gradient(bits=16)
    up = decode_upload("a.png", png_bytes(px), settings)
    np.testing.assert_allclose(up.array, px / 65535.0, atol=1e-6)


def test_jpeg_greyscale(settings):
    px = gradient()
    up = decode_upload("x.jpeg", jpeg_bytes(px), settings)
    assert up.source_format == "jpeg" and up.extension == "jpg"
    assert np.abs(up.array - px / 255.0).mean() < 0.02


def test_rgb_with_equal_channels_is_converted_with_a_warning(settings):
    px = gradient()
    up = decode_upload("rgb.png", png_bytes(np.stack([px] * 3, -1)), settings)
    np.testing.assert_allclose(up.array, px / 255.0, atol=1e-6)
    assert any("greyscale" in w for w in up.warnings)


@pytest.mark.parametrize("bits", [8, 16])
@pytest.mark.parametrize("syntax", [None, RLELossless, JPEG2000Lossless], ids=["explicit", "rle", "j2k"])
def test_dicom_lossless_syntaxes_decode_exactly(settings, bits, syntax):
    px = gradient(bits=bits)
    kw = {} if syntax is None else {"transfer_syntax": syntax}
    up = decode_upload("a.dcm", make_dicom(px, **kw), settings)
    assert up.source_format == "dicom" and up.extension == "dcm"
    np.testing.assert_allclose(up.array, px / (2**bits - 1), atol=1e-6)
    stored = pydicom.dcmread(io.BytesIO(up.stored_bytes))
    if syntax is not None:
        assert stored.file_meta.TransferSyntaxUID == syntax  # stored still compressed


def test_dicom_jpeg_baseline(settings):
    px = gradient()
    up = decode_upload("a.dcm", make_dicom(px, transfer_syntax=JPEGBaseline8Bit), settings)
    assert np.abs(up.array - px / 255.0).mean() < 0.02


def test_dicom_12_bits_stored_uses_its_range(settings):
    px = (gradient(bits=16) >> 4).astype(np.uint16)  # 0..4095
    up = decode_upload("a.dcm", make_dicom(px, bits_stored=12), settings)
    np.testing.assert_allclose(up.array, px / 4095.0, atol=1e-6)


def test_monochrome1_is_inverted(settings):
    px = gradient()
    m2 = decode_upload("a.dcm", make_dicom(px), settings).array
    m1 = decode_upload("b.dcm", make_dicom(px, photometric="MONOCHROME1"), settings).array
    np.testing.assert_allclose(m1, 1.0 - m2, atol=1e-6)


def test_rescale_and_window_are_applied(settings):
    px = gradient(bits=16)  # stored values 0..65535 -> HU = 0.1 * v - 1000 -> window [-1000, 1000]
    up = decode_upload("a.dcm", make_dicom(px, extra={"RescaleSlope": 0.1, "RescaleIntercept": -1000,
                                                      "WindowCenter": 0, "WindowWidth": 2000}), settings)
    hu = px * 0.1 - 1000
    expected = np.clip((hu - (0 - 0.5)) / (2000 - 1) + 0.5, 0, 1)
    np.testing.assert_allclose(up.array, expected, atol=2e-3)
    assert up.array.max() == 1.0 and up.array.min() == 0.0  # clipped by the window


def test_voi_lut_sequence_is_applied(settings):
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    px = gradient()
    lut = Dataset()
    lut.LUTDescriptor = [256, 0, 8]
    lut.add_new(0x00283006, "US", list(range(255, -1, -1)))  # LUTData: an inverting LUT
    up = decode_upload("a.dcm", make_dicom(px, extra={"VOILUTSequence": Sequence([lut])}), settings)
    np.testing.assert_allclose(up.array, (255 - px) / 255.0, atol=1e-6)


def test_non_chest_dicom_is_accepted_with_warnings(settings):
    up = decode_upload("a.dcm", make_dicom(modality="CT", body_part="KNEE"), settings)
    assert any("modality is CT" in w for w in up.warnings)
    assert any("KNEE" in w for w in up.warnings)
    assert not decode_upload("b.dcm", make_dicom(), settings).warnings


def test_rendition_is_an_8bit_png_of_the_array(settings):
    up = decode_upload("a.dcm", make_dicom(gradient(bits=16)), settings)
    im = Image.open(io.BytesIO(up.rendition_png))
    assert im.format == "PNG" and im.mode == "L" and im.size == (up.width, up.height)
    assert np.abs(np.asarray(im) / 255.0 - up.array).max() <= 0.5 / 255 + 1e-6


def test_phantom_png_and_dicom_agree(settings):
    from cxr.model.phantoms import dicom_bytes, generate_phantom, png_bytes as phantom_png

    ph = generate_phantom(3, size=128)
    a = decode_upload("p.png", phantom_png(ph, bits=16), settings).array
    b = decode_upload("p.dcm", dicom_bytes(ph, bits=16), settings).array
    c = decode_upload("q.dcm", dicom_bytes(ph, bits=16, photometric="MONOCHROME1"), settings).array
    assert a.shape == b.shape == (128, 128)
    assert np.abs(a - b).max() < 0.02
    assert np.abs(b - c).max() < 0.02
