"""COCO and VinDr-CXR readers round-trip what the writers (and ``cxr phantoms``) produce."""

import numpy as np
import pytest

from cxr.errors import InputError
from cxr.model.datasets import Sample, read_coco, read_dataset, read_vindr_csv, write_coco, write_vindr_csv
from cxr.model.phantoms import generate_phantom, write_dicom, write_png

pytestmark = pytest.mark.unit


@pytest.fixture
def samples(tmp_path):
    out = []
    for i in range(4):
        p = generate_phantom(i, 96, packed=i % 2 == 0)
        if i == 3:  # an image without findings
            p.boxes, p.labels = np.zeros((0, 4), np.float32), np.zeros(0, np.int64)
        path = (write_dicom(p, tmp_path / "images" / f"img{i}.dcm") if i == 1
                else write_png(p, tmp_path / "images" / f"img{i}.png"))
        out.append(Sample(path, np.round(p.boxes, 2), p.labels, 96, 96, f"img{i}", p.class_names))
    return out


def _same(a, b):
    assert len(a) == len(b)
    for x, y in zip(sorted(a, key=lambda s: s.image_path.name), sorted(b, key=lambda s: s.image_path.name)):
        assert x.image_path.name == y.image_path.name and (x.width, x.height) == (y.width, y.height)
        np.testing.assert_allclose(x.boxes, y.boxes, atol=0.01)
        assert x.labels.tolist() == y.labels.tolist()
        assert x.classes == y.classes


def test_coco_round_trip(samples, tmp_path):
    write_coco(samples, tmp_path / "annotations" / "instances.json")
    _same(read_coco(tmp_path), samples)
    _same(read_dataset(tmp_path / "annotations" / "instances.json"), samples)


def test_vindr_round_trip(samples, tmp_path):
    csv_path = write_vindr_csv(samples, tmp_path / "train.csv")
    assert "No finding" in csv_path.read_text()
    back = read_vindr_csv(csv_path, tmp_path / "images", classes=samples[0].classes)
    _same(back, samples)
    assert read_dataset(csv_path, images_dir=tmp_path / "images", classes=samples[0].classes)[0].classes == samples[0].classes


def test_vindr_real_layout_with_several_radiologists(tmp_path):
    write_png(generate_phantom(0, 64), tmp_path / "imgs" / "abc.png")
    (tmp_path / "t.csv").write_text(
        "image_id,class_name,class_id,rad_id,x_min,y_min,x_max,y_max\n"
        "abc,Cardiomegaly,3,R9,10,20,40,50\n"
        "abc,Cardiomegaly,3,R10,11,21,41,51\n"
        "abc,Aortic enlargement,0,R9,5,5,15,15\n"
        "abc,No finding,14,R8,,,,\n")
    s = read_vindr_csv(tmp_path / "t.csv", tmp_path / "imgs")
    assert s[0].classes == ("Aortic enlargement", "Cardiomegaly")
    assert s[0].labels.tolist() == [1, 1, 0] and s[0].boxes.shape == (3, 4)
    v = read_vindr_csv(tmp_path / "t.csv", tmp_path / "imgs", classes="vindr")
    assert v[0].labels.tolist() == [3, 3, 0]


def test_bad_datasets(tmp_path):
    with pytest.raises(InputError):
        read_coco(tmp_path)
    (tmp_path / "x.csv").write_text("a,b\n1,2\n")
    with pytest.raises(InputError, match="missing column"):
        read_vindr_csv(tmp_path / "x.csv", tmp_path)
    (tmp_path / "y.csv").write_text("image_id,class_name,class_id,rad_id,x_min,y_min,x_max,y_max\nzzz,ILD,5,R1,1,1,5,5\n")
    with pytest.raises(InputError, match="no image file"):
        read_vindr_csv(tmp_path / "y.csv", tmp_path)
    (tmp_path / "annotations").mkdir()
    (tmp_path / "annotations" / "instances.json").write_text("[]")
    with pytest.raises(InputError, match="COCO"):
        read_coco(tmp_path)


def test_cli_phantoms_writes_readable_dataset(tmp_path, run_cxr):
    r = run_cxr("phantoms", "3", str(tmp_path / "ph"), "--size", "96", "--packed")
    assert r.returncode == 0, r.stderr
    coco = read_coco(tmp_path / "ph")
    vindr = read_vindr_csv(tmp_path / "ph" / "labels.csv", tmp_path / "ph" / "images", classes=coco[0].classes)
    _same(coco, vindr)
    ref = generate_phantom(1, 96, packed=True)
    np.testing.assert_allclose(coco[1].boxes, ref.boxes, atol=0.01)
    r = run_cxr("phantoms", "2", str(tmp_path / "dc"), "--dicom", "--size", "64", "--photometric", "MONOCHROME1")
    assert r.returncode == 0 and len(list((tmp_path / "dc" / "images").glob("*.dcm"))) == 2
    r = run_cxr("phantoms", "1", str(tmp_path / "bad"), "--dicom", "--bits", "12", "--size", "64")
    assert r.returncode == 3 and r.stderr.startswith("cxr: error:")
