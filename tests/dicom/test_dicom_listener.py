"""The DICOM listener with real peers: dcmtk's echoscu and storescu, and pynetdicom senders.

The listener runs in this process on a free port (its own TCP server: the same code as
``cxr dicom listen``); the stores are a real SQLite file + lake directory, or MariaDB + the S3
endpoint of ``cxr services``.
"""

from __future__ import annotations

import io
import logging
import subprocess
import threading

import pydicom
import pytest
from dicom_helpers import (
    CountingPredictor,
    counts,
    dcmtk,
    pdf_dataset,
    phantom_dataset,
    phi_values,
    send,
    write_phantoms,
)
from sqlalchemy import select

from cxr.stores import layout
from cxr.stores.schema import image, pred_bounding_box, transaction

pytestmark = pytest.mark.integration


def storescu(port: int, files, *, aet: str = "STORESCU") -> subprocess.CompletedProcess:
    return dcmtk("storescu", "-nh", "-xv", "-aet", aet, "-aec", "CXR", "127.0.0.1", str(port), *map(str, files))


def test_echo_from_an_allowed_ae_succeeds_and_others_are_rejected_at_association(sqlite_engine, local_lake, listen,
                                                                                 tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="cxr.dicom")
    ln = listen(sqlite_engine, local_lake, dicom_allowed_aes="STORESCU@127.0.0.1, ELSEWHERE@10.1.2.3")
    port = str(ln.scp.port)
    ok = dcmtk("echoscu", "-aet", "STORESCU", "-aec", "CXR", "127.0.0.1", port)
    assert ok.returncode == 0, ok.stderr
    for aet in ("INTRUDER", "ELSEWHERE"):  # unknown title; known title from another host
        bad = dcmtk("echoscu", "-aet", aet, "-aec", "CXR", "127.0.0.1", port)
        assert bad.returncode != 0 and "Calling AE Title Not Recognized" in bad.stderr, bad.stderr
    files = write_phantoms(tmp_path / "in", [1, 2])
    refused = storescu(ln.scp.port, files, aet="INTRUDER")
    assert refused.returncode != 0 and "Association Rejected" in refused.stderr
    assert counts(sqlite_engine) == {"image": 0, "transaction": 0, "pred_bounding_box": 0}
    assert "association from INTRUDER@127.0.0.1 refused: calling AE title not allowed" in caplog.text


def test_an_empty_allow_list_refuses_everyone_and_says_so(sqlite_engine, local_lake, listen, caplog):
    caplog.set_level(logging.INFO, logger="cxr.dicom")
    ln = listen(sqlite_engine, local_lake, dicom_allowed_aes="")
    assert "CXR_DICOM_ALLOWED_AES is empty: every association will be refused" in caplog.text
    out = dcmtk("echoscu", "-aet", "STORESCU", "-aec", "CXR", "127.0.0.1", str(ln.scp.port))
    assert out.returncode != 0 and "Calling AE Title Not Recognized" in out.stderr


@pytest.mark.parametrize("kind", ["sqlite-local", pytest.param("mariadb-s3", marks=pytest.mark.e2e)])
def test_twenty_instances_in_two_syntaxes_are_stored_deidentified_with_predictions_once(
        kind, request, listen, twenty_phantoms, caplog):
    db_kind, lake_kind = kind.split("-")
    engine, lake = request.getfixturevalue(f"{db_kind}_engine"), request.getfixturevalue(f"{lake_kind}_lake")
    caplog.set_level(logging.INFO, logger="cxr.dicom")
    ln = listen(engine, lake)
    syntaxes = {str(pydicom.dcmread(f, stop_before_pixels=True).file_meta.TransferSyntaxUID) for f in twenty_phantoms}
    assert "1.2.840.10008.1.2.4.90" in syntaxes and len(syntaxes) == 2  # JPEG 2000 lossless + explicit LE
    out = storescu(ln.scp.port, twenty_phantoms)
    assert out.returncode == 0, out.stderr
    n = counts(engine)
    assert n["image"] == 20 and n["transaction"] == 20 and n["pred_bounding_box"] > 0, n
    with engine.connect() as conn:
        rows = conn.execute(select(transaction.c.source, transaction.c.sr_key, transaction.c.skip_reason,
                                   image.c.folder, image.c.image_file, image.c.study_key, image.c.original_name)
                            .select_from(transaction.join(image))).all()
    assert {r.source for r in rows} == {"dicom"} and all(r.skip_reason is None for r in rows)
    assert all(r.study_key and r.original_name is None for r in rows)
    secrets = phi_values(twenty_phantoms)
    for r in rows:
        stored = pydicom.dcmread(io.BytesIO(lake.get(f"{r.folder}/{r.image_file}")))
        assert stored.PatientIdentityRemoved == "YES" and stored.pixel_array.shape == (192, 192)
        assert layout.sr_image_sha256(r.sr_key) == r.image_file.split(".")[0] and lake.exists(r.sr_key)
        blob = lake.get(f"{r.folder}/{r.image_file}") + lake.get(r.sr_key)
        assert not [s for s in secrets if s.encode() in blob]
    assert not [s for s in secrets if s in caplog.text]
    again = storescu(ln.scp.port, twenty_phantoms)
    assert again.returncode == 0, again.stderr
    assert counts(engine) == n  # nothing new
    assert caplog.text.count("(already stored)") == 20


def test_a_non_image_instance_is_refused_while_the_association_carries_on(sqlite_engine, local_lake, listen, caplog):
    caplog.set_level(logging.INFO, logger="cxr.dicom")
    ln = listen(sqlite_engine, local_lake)
    from cxr.dicom.sr import build_report, header_of
    from test_dicom_sr_views import FINDINGS, IDENTITY

    report = build_report(header_of(phantom_dataset(40)), FINDINGS, IDENTITY)
    statuses = send(ln.scp.port, [phantom_dataset(41), report, pdf_dataset(), phantom_dataset(42)])
    assert statuses == [0x0000, 0x0122, 0x0122, 0x0000]
    assert counts(sqlite_engine)["image"] == 2
    assert "Comprehensive 3D SR Storage is not an image cxr reads" in caplog.text
    assert "Encapsulated PDF Storage is not an image cxr reads" in caplog.text


def test_a_lateral_view_is_stored_without_detection_and_the_views_of_a_study_are_grouped(
        sqlite_engine, local_lake, listen, caplog):
    caplog.set_level(logging.INFO, logger="cxr.dicom")
    ln = listen(sqlite_engine, local_lake)
    lateral, frontal, knee = phantom_dataset(50, view="LL"), phantom_dataset(51, view="PA"), phantom_dataset(52)
    frontal.StudyInstanceUID = lateral.StudyInstanceUID  # two views of one study
    knee.BodyPartExamined = "KNEE"
    assert send(ln.scp.port, [lateral, frontal, knee]) == [0, 0, 0]
    assert "warning: DICOM body part is KNEE, not CHEST" in caplog.text  # stored, with the uploads' warning
    with sqlite_engine.connect() as conn:
        keys = conn.execute(select(image.c.study_key).order_by(image.c.image_id)).scalars().all()
        assert keys[0] == keys[1] != keys[2] and len(keys[0]) == 64  # listed together by study_key
        assert lateral.StudyInstanceUID not in keys
        rows = {r.skip_reason is not None: r for r in conn.execute(select(transaction).where(transaction.c.image_id < 3))}
    assert "ViewPosition LL" in rows[True].skip_reason and rows[True].sr_key is None
    assert rows[False].sr_key is not None
    with sqlite_engine.connect() as conn:
        boxes = {r.transaction_id for r in conn.execute(select(pred_bounding_box.c.transaction_id))}
    assert rows[True].transaction_id not in boxes


def test_an_undecodable_image_is_refused_with_its_reason(sqlite_engine, local_lake, listen, caplog):
    caplog.set_level(logging.INFO, logger="cxr.dicom")
    ln = listen(sqlite_engine, local_lake)
    colour = phantom_dataset(60)
    colour.SamplesPerPixel, colour.PhotometricInterpretation = 3, "RGB"
    assert send(ln.scp.port, [colour, phantom_dataset(61)]) == [0xC000, 0x0000]
    assert "refused: colour DICOM (RGB, 3 samples per pixel)" in caplog.text
    assert counts(sqlite_engine)["image"] == 1


def test_saturated_workers_answer_out_of_resources(sqlite_engine, local_lake, listen):
    gate = threading.Event()
    ln = listen(sqlite_engine, local_lake, CountingPredictor(gate), dicom_workers=1, dicom_busy_wait_s=0.5)
    first: list[int] = []
    sender = threading.Thread(target=lambda: first.extend(send(ln.scp.port, [phantom_dataset(70)])))
    sender.start()
    try:
        for _ in range(200):  # until the first instance holds the only worker
            if ln.scp.pending:
                break
            threading.Event().wait(0.05)
        assert send(ln.scp.port, [phantom_dataset(71)], calling_ae="STORESCU") == [0xA700]
    finally:
        gate.set()
        sender.join(60)
    assert first == [0x0000] and counts(sqlite_engine)["image"] == 1


class _FailingLake:
    """The real lake, except that the first ``fail`` puts raise (a full disk, S3 down)."""

    def __init__(self, lake, fail: int):
        self.lake, self.fail = lake, fail

    def put(self, key, data, content_type=None):
        if self.fail > 0:
            self.fail -= 1
            raise OSError(28, "No space left on device")
        return self.lake.put(key, data, content_type)

    def __getattr__(self, name):
        return getattr(self.lake, name)


def test_a_storage_failure_is_a_failure_status_and_the_resend_stores_it(sqlite_engine, local_lake, listen):
    ln = listen(sqlite_engine, _FailingLake(local_lake, fail=1))
    ds = phantom_dataset(80)
    assert send(ln.scp.port, [ds]) == [0x0110]
    assert counts(sqlite_engine)["image"] == 0  # nothing half-stored
    assert send(ln.scp.port, [ds]) == [0x0000]
    assert counts(sqlite_engine)["image"] == 1


def test_pynetdicom_is_configured_to_keep_datasets_in_memory_and_out_of_logs(sqlite_engine, local_lake, listen):
    from pynetdicom import _config

    listen(sqlite_engine, local_lake)
    assert _config.STORE_RECV_CHUNKED_DATASET is False and _config.STORE_SEND_CHUNKED_DATASET is False
    assert _config.LOG_HANDLER_LEVEL == "none"
    assert _config.LOG_REQUEST_IDENTIFIERS is False and _config.LOG_RESPONSE_IDENTIFIERS is False
    assert logging.getLogger("pynetdicom").getEffectiveLevel() >= logging.WARNING
