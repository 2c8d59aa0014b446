"""Awkward but valid radiographs are accepted by content (issue 11), and file names carry no identifiers.

Viewers and office tools save greyscale X-rays as palette PNGs, as CMYK JPEGs, or as a JPEG named
``.png``: each is decoded by its bytes, converted to luminance with a warning saying so, and
stored. A real colour picture is still refused (``test_ingest_bad_inputs``).
"""

from __future__ import annotations

import io

import numpy as np
import pydicom
import pytest
from ingest_factory import FAKE, gradient, jpeg_bytes, make_dicom, png_bytes
from PIL import Image

from cxr.ingest.decode import decode_upload
from cxr.ingest.names import header_identifiers, mask_name, mask_path
from cxr.model.pixels import COLOUR_TOLERANCE

pytestmark = pytest.mark.unit


def _pil(im: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt, **kw)
    return buf.getvalue()


def test_greyscale_palette_png_is_accepted_as_its_luminance(make_settings):
    grey = gradient()
    data = _pil(Image.fromarray(grey).convert("P"), "PNG")
    assert Image.open(io.BytesIO(data)).mode == "P"
    up = decode_upload("export.png", data, make_settings())
    np.testing.assert_array_equal(np.round(up.array * 255).astype(np.uint8), grey)
    assert up.source_format == "png" and up.stored_bytes == data
    assert any("palette" in w and "luminance" in w for w in up.warnings), up.warnings


def test_greyscale_cmyk_jpeg_is_accepted_within_jpeg_noise(make_settings):
    grey = gradient()
    data = _pil(Image.fromarray(grey).convert("CMYK"), "JPEG", quality=95)
    assert Image.open(io.BytesIO(data)).mode == "CMYK"
    up = decode_upload("office.jpg", data, make_settings())
    assert up.source_format == "jpeg" and up.array.shape == grey.shape
    assert np.abs(up.array * 255 - grey.astype(np.float32)).mean() < 3  # lossy JPEG, not a different image
    assert any("CMYK" in w and "luminance" in w for w in up.warnings), up.warnings


def test_rgb_jpeg_of_a_greyscale_image_is_accepted(make_settings):
    grey = gradient()
    up = decode_upload("viewer.jpg", jpeg_bytes(np.stack([grey] * 3, -1)), make_settings())
    assert up.array.shape == grey.shape and any("luminance" in w for w in up.warnings)


def test_tinted_colour_photo_is_still_refused(make_settings):
    grey = gradient().astype(np.int16)
    tinted = np.stack([grey, grey, np.clip(grey + 4 * COLOUR_TOLERANCE, 0, 255)], -1).astype(np.uint8)
    from cxr.errors import InputError

    with pytest.raises(InputError, match="colour image"):
        decode_upload("photo.png", png_bytes(tinted), make_settings())


@pytest.mark.parametrize(("name", "make", "fmt", "stored_ext"), [
    ("chest.png", lambda: jpeg_bytes(gradient()), "jpeg", "jpg"),
    ("chest.jpg", lambda: png_bytes(gradient()), "png", "png"),
    ("chest.dcm", lambda: jpeg_bytes(gradient()), "jpeg", "jpg"),
    ("chest.png", lambda: make_dicom(), "dicom", "dcm"),
])
def test_the_content_decides_the_format_not_the_extension(make_settings, name, make, fmt, stored_ext):
    up = decode_upload(name, make(), make_settings())
    assert up.source_format == fmt and up.extension == stored_ext and up.image_key.endswith("." + stored_ext)
    assert any(f"holds a {fmt.upper()}" in w for w in up.warnings), up.warnings


# -- file names ------------------------------------------------------------------------------------
def test_mask_name_removes_header_tokens_and_digit_runs():
    ids = {"1234567", "doe", "john", "acc998877"}
    assert mask_name("1234567_DOE_JOHN_CXR.dcm", ids) == "CXR.dcm"
    assert mask_name("DOE^JOHN.dcm", ids) == "upload.dcm"
    assert mask_name("chest_ACC998877_pa.dcm", ids) == "chest_pa.dcm"
    assert mask_name("MRN20240105_pa.png") == "MRN########_pa.png"
    assert mask_name("x'); DROP TABLE image;--.png") == "x'); DROP TABLE image;--.png"  # nothing to mask
    assert mask_path("/exports/20240105/1234567_DOE.png", ids) == "/exports/########/upload.png"


def test_header_identifiers_cover_names_ids_and_dates():
    ds = pydicom.dcmread(io.BytesIO(make_dicom()))
    ids = header_identifiers(ds)
    for value in ("testpatient", "wilhelmina", "pid-7730418", "acc99887766", "20240309", "19530417", "study4711x"):
        assert value in ids, value


def test_a_dicom_named_after_its_patient_stores_a_clean_name(make_settings):
    name = f"{FAKE['PatientID']}_Testpatient_Wilhelmina_{FAKE['AccessionNumber']}_{FAKE['StudyDate']}_chest.dcm"
    up = decode_upload(name, make_dicom(), make_settings())
    assert up.name == "chest.dcm"
    for value in (FAKE["PatientID"], "Testpatient", "Wilhelmina", FAKE["AccessionNumber"], FAKE["StudyDate"]):
        assert value not in up.name


def test_png_names_lose_their_digit_runs(make_settings):
    up = decode_upload("7730418_chest.png", png_bytes(gradient()), make_settings())
    assert up.name == "#######_chest.png"
