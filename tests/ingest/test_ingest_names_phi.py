"""A DICOM named after its own patient leaves no identifier anywhere: DB, lake, warehouse, mart, output.

Hospital exports name files ``<PatientID>_<FAMILY>_<GIVEN>_<AccessionNumber>.dcm``. The whole
pipeline runs on it (``cxr ingest``, ``cxr warehouse``, ``cxr mart``, each a subprocess on the
embedded stores) and every byte it leaves behind is searched for the patient's values.
"""

from __future__ import annotations

import json

import pytest
from ingest_factory import require_model

from cxr.model.phantoms import fake_patient, generate_phantom, write_dicom

pytestmark = pytest.mark.e2e


def _all_bytes(root) -> bytes:
    return b"\n".join(p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file())


def test_a_dicom_named_after_its_patient_leaves_no_identifier(run_cxr, make_settings, tmp_path):
    from sqlalchemy import select

    from cxr.stores.db import engine_from_settings, upgrade
    from cxr.stores.schema import TABLES
    from cxr.stores.warehouse import database_from_settings

    settings = make_settings()
    upgrade(engine_from_settings(settings))
    patient = fake_patient(7)
    family, given = patient["PatientName"].split("^")
    name = f"{patient['PatientID']}_{family}_{given}_{patient['AccessionNumber']}_{patient['StudyDate']}_CXR.dcm"
    src = write_dicom(generate_phantom(7, size=128), tmp_path / "export" / name)
    env = {"CXR_MODELS_DIR": str(require_model())}
    outputs = []
    for args in (["ingest", str(src), "--json"], ["ingest", str(src)], ["warehouse"],
                 ["mart", str(tmp_path / "mart")], ["lake", "ls"]):
        res = run_cxr(*args, env=env, timeout=300)
        assert res.returncode == 0, (args, res.stderr[-2000:])
        outputs.append(res)
    summary = json.loads(outputs[0].stdout)
    assert summary["n_stored"] == 1 and summary["stored"][0]["path"].endswith("CXR.dcm")

    documents = repr(list(database_from_settings(settings)["images"].find({}, {"_id": 0})))
    with engine_from_settings(settings).connect() as conn:
        rows = [repr(tuple(r)) for table in TABLES for r in conn.execute(select(table))]
    haystacks = {
        "DB": "\n".join(rows).encode(),
        "lake": _all_bytes(settings.data_dir / "lake"),
        "warehouse": documents.encode(),
        "mart": _all_bytes(tmp_path / "mart"),
        "any file under the data dir (the SQLite file and its WAL too)": _all_bytes(settings.data_dir),
        "output": "\n".join(r.stdout + r.stderr for r in outputs).encode(),
    }
    assert b"CXR.dcm" in haystacks["DB"]  # the masked name is stored ...
    for value in (patient["PatientID"], family, given, patient["AccessionNumber"], patient["StudyDate"]):
        for where, blob in haystacks.items():  # ... and no identifier anywhere
            assert value.encode() not in blob and value.lower().encode() not in blob, f"{value} in {where}"
