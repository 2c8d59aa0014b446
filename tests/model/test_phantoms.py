import io

import numpy as np
import pytest

from cxr.model.classes import SEED_CLASSES, VINDR_CXR_CLASSES
from cxr.model.phantoms import (dicom_bytes, fake_patient, generate_phantom, phantom_digest, png_bytes, write_dicom,
                                write_png)

pytestmark = pytest.mark.unit


def test_same_seed_same_phantom_other_seed_other_phantom():
    a, b, c = generate_phantom(7, 128), generate_phantom(7, 128), generate_phantom(8, 128)
    assert phantom_digest(a) == phantom_digest(b)
    assert phantom_digest(a) != phantom_digest(c)
    assert a.image.dtype == np.uint16 and a.image.shape == (128, 128)


def test_boxes_inside_image_and_labels_valid():
    for seed in range(6):
        p = generate_phantom(seed, 256, packed=True)
        assert len(p.boxes) == len(p.labels) > 0
        assert (p.boxes[:, 0] >= 0).all() and (p.boxes[:, 2] <= 256).all()
        assert (p.boxes[:, 2] > p.boxes[:, 0]).all() and (p.boxes[:, 3] > p.boxes[:, 1]).all()
        assert set(p.labels.tolist()) <= set(range(len(SEED_CLASSES)))
    assert any("Nodule/Mass" == SEED_CLASSES[i] for i in p.labels)


def test_nodule_is_brighter_than_its_surroundings():
    p = generate_phantom(3, 256, packed=True)
    img = p.as_float()
    k = SEED_CLASSES.index("Nodule/Mass")
    b = p.boxes[p.labels == k][0].astype(int)
    cx, cy = (b[0] + b[2]) // 2, (b[1] + b[3]) // 2
    assert img[cy, cx] > img[cy, max(0, b[0] - 6)] + 0.05


def test_configurable_classes_vindr():
    p = generate_phantom(1, 128, "vindr", packed=True)
    assert p.class_names == VINDR_CXR_CLASSES
    assert len(p.labels) and p.labels.max() < 14


def test_png_8_and_16_bit(tmp_path):
    from PIL import Image

    p = generate_phantom(2, 128)
    write_png(p, tmp_path / "a.png")
    with Image.open(tmp_path / "a.png") as im:
        assert im.mode == "L" and im.size == (128, 128)
    with Image.open(io.BytesIO(png_bytes(p, bits=16))) as im:
        assert np.array_equal(np.asarray(im).astype(np.uint16), p.image)


@pytest.mark.parametrize("photometric", ["MONOCHROME2", "MONOCHROME1"])
@pytest.mark.parametrize("bits", [8, 16])
def test_dicom_pixels_and_fake_patient_tags(tmp_path, photometric, bits):
    import pydicom

    p = generate_phantom(5, 128)
    path = write_dicom(p, tmp_path / "x.dcm", photometric=photometric, bits=bits)
    ds = pydicom.dcmread(path)
    arr = ds.pixel_array.astype(np.int64)
    maxval = 2**bits - 1
    expected = (p.image.astype(np.int64) >> (16 - bits))
    if photometric == "MONOCHROME1":
        expected = maxval - expected
    assert np.array_equal(arr, expected)
    assert ds.PhotometricInterpretation == photometric and ds.BitsStored == bits
    fp = fake_patient(5)
    assert str(ds.PatientName) == fp["PatientName"] and ds.PatientID == fp["PatientID"]
    for key in ("PatientBirthDate", "PatientAddress", "InstitutionName", "ReferringPhysicianName", "StudyDate"):
        assert str(ds.data_element(key).value) == fp[key]
    assert ds.StudyInstanceUID and ds.SOPInstanceUID and ds.AcquisitionDate == fp["StudyDate"]
    block = ds.private_block(0x0011, "CXR PHANTOM")
    assert block[0x01].value == fp["PrivateValue"]


def test_fake_patient_deterministic_and_bad_options():
    from cxr.errors import InputError

    assert fake_patient(3) == fake_patient(3) != fake_patient(4)
    with pytest.raises(InputError):
        dicom_bytes(generate_phantom(0, 64), photometric="RGB")
    with pytest.raises(InputError):
        generate_phantom(0, 16)
