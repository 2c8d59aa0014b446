"""PHI: ingest phantom DICOMs carrying fake patient tags, then scan the DB, the lake and the logs."""

from __future__ import annotations

import io
import logging

import pydicom
from ingest_factory import lake_keys
from sqlalchemy import select

from cxr.ingest.pipeline import ingest_files
from cxr.model.phantoms import fake_patient, generate_phantom, write_dicom
from cxr.stores.schema import TABLES


def phi_values(path, seed: int) -> set[str]:
    """Every identifying value written into the file: fake_patient's values, name parts, UIDs, dates."""
    values = {v for k, v in fake_patient(seed).items() if k not in ("PatientSex",) and len(v) >= 4}
    values |= {part for v in values for part in v.replace("^", " ").replace(",", " ").split() if len(part) >= 4
               and not part.isdigit()}
    ds = pydicom.dcmread(path)
    values |= {str(ds[k].value) for k in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID",
                                          "FrameOfReferenceUID")}
    values -= {"Hospital", "Street", "Road", "Avenue", "General", "Medical", "Center", "Institute", "internal", "Chest", "City", "Hospital"}
    return values


def test_no_patient_value_reaches_db_lake_or_logs(stores, settings, fake_predictor, tmp_path, caplog, capsys):
    engine, lake = stores
    files, secrets = [], set()
    for seed in (21, 22):
        path = write_dicom(generate_phantom(seed, size=96), tmp_path / f"study-{seed}.dcm",
                           photometric="MONOCHROME1" if seed % 2 else "MONOCHROME2")
        files.append(path)
        secrets |= phi_values(path, seed)
    assert len(secrets) > 20

    caplog.set_level(logging.DEBUG)
    summary = ingest_files(files, settings, predictor=fake_predictor, engine=engine, lake=lake, progress=True)
    assert len(summary.stored) == 2 and not summary.rejected
    out = capsys.readouterr()

    db_text = []
    with engine.connect() as conn:
        for table in TABLES:
            for row in conn.execute(select(table)):
                db_text.extend(str(v) for v in row)
    db_blob = "\n".join(db_text).lower()
    lake_blobs = {key: lake.get(key) for key in lake_keys(lake)}
    assert len(lake_blobs) == 4
    log_blob = (caplog.text + out.out + out.err + repr(summary.as_dict())).lower()

    for value in secrets:
        assert value.lower() not in db_blob, f"PHI in DB: {value}"
        assert value.lower() not in log_blob, f"PHI in logs: {value}"
        for key, blob in lake_blobs.items():
            assert value.encode() not in blob and value.upper().encode() not in blob, f"PHI in lake {key}: {value}"
    # the stored DICOM is still a valid, de-identified DICOM
    dcm_keys = [k for k in lake_blobs if k.endswith(".dcm")]
    assert len(dcm_keys) == 2
    for key in dcm_keys:
        ds = pydicom.dcmread(io.BytesIO(lake_blobs[key]))
        assert ds.PatientIdentityRemoved == "YES" and ds.pixel_array.shape == (96, 96)
