"""Patient-level splits: 30 phantoms from 10 fake patients; no patient is in both splits, at any val_fraction."""

from __future__ import annotations

import pytest
from ingest_factory import FakePredictor
from sqlalchemy import select

from cxr.ingest.pipeline import ingest_files
from cxr.mart.coco import split_of
from cxr.mart.export import export_mart, load_instances
from cxr.mart.filters import MartFilters
from cxr.model.classes import SEED_CLASSES
from cxr.model.phantoms import fake_patient, generate_phantom, write_dicom
from cxr.stores.catalog import Stores
from cxr.stores.schema import image
from cxr.warehouse import etl

pytestmark = pytest.mark.integration


def test_no_patient_in_both_splits(tmp_path, make_settings, sqlite_engine, local_lake, warehouse_db):
    for patient in range(10):
        who = fake_patient(500 + patient)
        for view in range(3):
            seed = 1000 + 10 * patient + view
            write_dicom(generate_phantom(seed, 128), tmp_path / "in" / f"p{patient}_{view}.dcm", patient=who)
    stores = Stores.open(make_settings(), engine=sqlite_engine, lake=local_lake, warehouse=warehouse_db)
    ingest_files([tmp_path / "in"], stores=stores, predictor=FakePredictor())
    etl.run_incremental(stores=stores)
    with sqlite_engine.connect() as conn:
        patient_of = dict(conn.execute(select(image.c.image_id, image.c.patient_key)).all())
    assert len(patient_of) == 30 and len(set(patient_of.values())) == 10 and None not in patient_of.values()
    assert not any(who["PatientID"] in str(patient_of) for who in map(fake_patient, range(500, 510)))
    seen_val = []
    for fraction in (0.05, 0.2, 0.35, 0.5, 0.65, 0.8, 0.95):
        out = tmp_path / f"mart-{fraction}"
        export_mart(out, MartFilters(val_fraction=fraction, labels="predicted"), database=warehouse_db,
                    lake=local_lake, classes=SEED_CLASSES, progress=False)
        coco = load_instances(out)
        splits: dict[str, set[str]] = {}
        for im in coco["images"]:
            splits.setdefault(patient_of[im["cxr_image_id"]], set()).add(im["split"])
        assert len(coco["images"]) == 30 and all(len(s) == 1 for s in splits.values()), fraction
        seen_val.append(sum(1 for s in splits.values() if s == {"val"}))
    assert seen_val == sorted(seen_val) and 0 < seen_val[3] < 10  # a real split: both sides used, growing with it
    # images without a patient key split by image, as before
    assert split_of("ab" * 32, 0.5) == split_of("ab" * 32, 0.5, None)
