"""The whole hospital loop, end to end, then a PHI scan of everything cxr wrote.

Modality (dcmtk storescu) -> Orthanc (Debian, the PACS; its Lua ``OnStoredInstance`` forwards new
CR/DX to cxr) -> ``cxr dicom listen`` (a process, on MariaDB + the S3 endpoint) -> an SR for each
image back to Orthanc, filed in the image's study; ``dsrdump`` reads each SR and its boxes match
the stored ``pred_bounding_box`` rows. Then the warehouse ETL runs, and no patient value or
original UID is found in the DB, the lake, the warehouse, the listener's log or its temp folder.
"""

from __future__ import annotations

import io
import json
import re
import time

import numpy as np
import pydicom
import pytest
from dicom_helpers import MODELS, dcmtk, free_port, phi_values, write_phantoms
from pydicom.uid import JPEG2000Lossless
from sqlalchemy import select

from cxr.dicom.deid import replace_uid
from cxr.stores.schema import TABLES, image, pred_bounding_box, transaction

pytestmark = pytest.mark.e2e
KEY = "hospital-loop-test-key"
POLYLINE = re.compile(r"SCOORD:\(,,\"Image Region\"\)=\(POLYLINE,([-0-9.e/,]+)\)")


def _wait(what: str, check, timeout: float = 180):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def test_pacs_to_cxr_and_back_then_no_phi_anywhere(services, mariadb_engine, s3_lake, warehouse_db, orthanc,
                                                   run_cxr, tmp_path):
    from cxr.devtools.services import DicomListener

    files = (write_phantoms(tmp_path / "modality", range(500, 503), size=256)
             + write_phantoms(tmp_path / "modality", range(503, 506), size=256, syntax=JPEG2000Lossless))
    secrets = phi_values(files)
    assert len(secrets) > 30
    (tmp_path / "spool").mkdir()
    store_env = {"CXR_DB_URL": mariadb_engine.url.render_as_string(hide_password=False),
                 "CXR_LAKE_URL": f"s3://{s3_lake.bucket}", "CXR_S3_ENDPOINT_URL": services["CXR_S3_ENDPOINT_URL"],
                 "CXR_S3_REGION": services["CXR_S3_REGION"], "CXR_WAREHOUSE_URL": services["CXR_WAREHOUSE_URL"],
                 "CXR_WAREHOUSE_DB": warehouse_db.name, "CXR_DEID_KEY": KEY}
    port = free_port()
    pacs = orthanc(port)
    listener = DicomListener(tmp_path / "services", port, base_env={**store_env, "TMPDIR": str(tmp_path / "spool")},
                             data_dir=tmp_path / "var", models_dir=MODELS, orthanc_port=pacs.port)
    listener.start()
    try:
        sent = dcmtk("storescu", "-xv", "-aet", "MODALITY", "-aec", "ORTHANC", "127.0.0.1", str(pacs.port),
                     *map(str, files))
        assert sent.returncode == 0, sent.stderr
        srs = _wait("an SR per image in Orthanc", lambda: (lambda found: found if len(found) == len(files) else None)(
            pacs.api("POST", "/tools/find", {"Level": "Instance", "Query": {"Modality": "SR"}})))
    finally:
        listener.stop()
    with mariadb_engine.connect() as conn:
        assert conn.execute(select(transaction.c.sr_status)).scalars().all() == ["delivered"] * len(files)

    # each SR is in the study of its image, references it, and its boxes are the stored ones
    by_deid_uid = _transactions_by_stored_uid(mariadb_engine, s3_lake)
    compared = 0
    for path in files:
        original = pydicom.dcmread(path, stop_before_pixels=True)
        study = pacs.api("POST", "/tools/find", {"Level": "Study", "Query": {"StudyInstanceUID": original.StudyInstanceUID}})
        assert len(study) == 1
        instances = pacs.api("GET", f"/studies/{study[0]}/instances")
        modalities = sorted(i["MainDicomTags"].get("Modality", "") or
                            pacs.api("GET", f"/instances/{i['ID']}/simplified-tags").get("Modality", "") for i in instances)
        assert modalities == ["DX", "SR"], modalities
        sr_id = next(i["ID"] for i in instances if i["ID"] in srs)
        sr_path = tmp_path / f"{sr_id}.dcm"
        with pacs_file(pacs, sr_id) as data:
            sr_path.write_bytes(data)
        dump = dcmtk("dsrdump", "+Pl", str(sr_path))
        assert dump.returncode == 0 and dump.stderr.strip() == "", dump.stderr
        assert "Imaging Measurement Report" in dump.stdout and "All algorithms succeeded" in dump.stdout
        sr = pydicom.dcmread(sr_path)
        ref = sr.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0].ReferencedSOPSequence[0]
        assert ref.ReferencedSOPInstanceUID == original.SOPInstanceUID and sr.PatientID == original.PatientID
        got = sorted(_corners(p) for p in POLYLINE.findall(dump.stdout))
        want = sorted(by_deid_uid[replace_uid(str(original.SOPInstanceUID), KEY.encode())])
        assert len(got) == len(want)
        assert np.allclose(np.array(got).reshape(-1, 4), np.array(want).reshape(-1, 4), atol=0.5)
        compared += len(got)
    assert compared >= len(files)  # the demo model finds boxes on these phantoms: there was something to compare

    out = run_cxr("warehouse", env=store_env, timeout=300)
    assert out.returncode == 0, out.stderr
    assert warehouse_db["images"].count_documents({}) == len(files)
    _scan_for_phi(secrets, mariadb_engine, s3_lake, warehouse_db,
                  logs=listener.log.read_text() + out.stdout + out.stderr, spool=tmp_path / "spool")


class pacs_file:
    """The bytes of an Orthanc instance (``GET /instances/ID/file``)."""

    def __init__(self, pacs, instance_id: str):
        import urllib.request

        self.rsp = urllib.request.urlopen(f"{pacs.url}/instances/{instance_id}/file", timeout=30)  # noqa: S310

    def __enter__(self) -> bytes:
        return self.rsp.read()

    def __exit__(self, *exc) -> None:
        self.rsp.close()


def _corners(points: str) -> tuple[float, float, float, float]:
    xy = np.array([[float(v) for v in p.split("/")] for p in points.split(",")])
    assert len(xy) == 5 and np.allclose(xy[0], xy[-1])  # a closed 5-point polyline
    return float(xy[:, 0].min()), float(xy[:, 1].min()), float(xy[:, 0].max()), float(xy[:, 1].max())


def _transactions_by_stored_uid(engine, lake) -> dict[str, list[tuple[float, float, float, float]]]:
    """The stored (de-identified) SOP Instance UID of each image -> the boxes of its transaction."""
    out: dict[str, list] = {}
    with engine.connect() as conn:
        for row in conn.execute(select(image.c.image_id, image.c.folder, image.c.image_file, transaction.c.transaction_id)
                                .select_from(image.join(transaction))):
            uid = str(pydicom.dcmread(io.BytesIO(lake.get(f"{row.folder}/{row.image_file}")),
                                      stop_before_pixels=True).SOPInstanceUID)
            b = pred_bounding_box.c
            out[uid] = [tuple(r) for r in conn.execute(select(b.x_min, b.y_min, b.x_max, b.y_max)
                                                       .where(b.transaction_id == row.transaction_id))]
    return out


def _scan_for_phi(secrets: set[str], engine, lake, database, *, logs: str, spool) -> None:
    with engine.connect() as conn:
        db_text = "\n".join(repr(tuple(r)) for t in TABLES for r in conn.execute(select(t)))
    blobs = {o.key: lake.get(o.key) for o in lake.list("")}
    assert any(k.startswith("sr/") for k in blobs) and any(k.startswith("images/") for k in blobs)
    docs = json.dumps([d for name in database.list_collection_names() for d in database[name].find({}, {"_id": 0})],
                      default=str)
    spooled = b"".join(f.read_bytes() for f in spool.rglob("*") if f.is_file())
    assert "instance from ORTHANC@127.0.0.1" in logs
    for value in secrets:
        assert value.lower() not in db_text.lower(), f"PHI in the DB: {value}"
        assert value.lower() not in docs.lower(), f"PHI in the warehouse: {value}"
        assert value.lower() not in logs.lower(), f"PHI in the logs: {value}"
        assert value.encode() not in spooled, f"PHI in the temp folder: {value}"
        for key, blob in blobs.items():
            assert value.encode() not in blob and value.upper().encode() not in blob, f"PHI in the lake {key}: {value}"
