"""`cxr dicom listen | sr | echo`: one-line errors, and the SR of any stored transaction."""

from __future__ import annotations

import io
import socket

import pydicom
import pytest
from dicom_helpers import MODELS, dcmtk, free_port, phantom_dataset, phi_values, send, write_phantoms
from sqlalchemy import func, select

from cxr.dicom.sr import read_findings
from cxr.model.phantoms import generate_phantom, write_png
from cxr.stores.schema import pred_bounding_box, transaction

pytestmark = pytest.mark.integration


def _one_line_error(out, code: int, *needles: str) -> None:
    lines = out.stderr.strip().splitlines()
    assert out.returncode == code and len(lines) == 1 and lines[0].startswith("cxr: error: "), out.stderr
    assert "Traceback" not in out.stderr and all(n in lines[0] for n in needles), lines[0]


def test_help_lists_the_commands(run_cxr):
    out = run_cxr("dicom", "--help")
    assert out.returncode == 0 and all(f" {c} " in out.stdout for c in ("listen", "sr", "echo"))
    assert "not for clinical use" in out.stdout


def test_listen_refuses_bad_settings_an_old_schema_and_a_busy_port_in_one_line(run_cxr, tmp_path):
    _one_line_error(run_cxr("dicom", "listen", env={"CXR_DICOM_ALLOWED_AES": "PACS@"}), 2, "CXR_DICOM_ALLOWED_AES")
    _one_line_error(run_cxr("dicom", "listen", env={"CXR_DICOM_RESULTS_DEST": "PACS:104"}), 2,
                    "CXR_DICOM_RESULTS_DEST", "AE@host:port")
    _one_line_error(run_cxr("dicom", "listen", env={"CXR_MODELS_DIR": str(MODELS)}), 2, "cxr db upgrade")
    assert run_cxr("db", "upgrade").returncode == 0
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        _one_line_error(run_cxr("dicom", "listen", "--port", str(port), env={"CXR_MODELS_DIR": str(MODELS)}), 2,
                        "CXR_DICOM_PORT", str(port))
    _one_line_error(run_cxr("dicom", "listen", env={"CXR_MODELS_DIR": str(MODELS), "CXR_DICOM_TLS_CERT": "/nope.pem",
                                                   "CXR_DICOM_TLS_KEY": "/nope.key"}), 2, "no such file")
    _one_line_error(run_cxr("dicom", "echo", f"CXR@127.0.0.1:{free_port()}"), 1, "no association")
    _one_line_error(run_cxr("dicom", "echo", "nonsense"), 2, "AE@host:port")
    _one_line_error(run_cxr("dicom", "sr", "99", str(tmp_path / "x.dcm")), 3, "no transaction 99")


def test_sr_of_a_dashboard_png_and_of_a_received_dicom(run_cxr, tmp_path, listen, sqlite_engine, local_lake):
    env = {"CXR_DB_URL": sqlite_engine.url.render_as_string(False), "CXR_LAKE_URL": local_lake.url,
           "CXR_MODELS_DIR": str(MODELS)}
    png = write_png(generate_phantom(11, size=160), tmp_path / "upload.png")
    assert run_cxr("ingest", png, env=env).returncode == 0
    out = run_cxr("dicom", "sr", "1", tmp_path / "png-sr.dcm", env=env)
    assert out.returncode == 0 and "wrote the SR of transaction 1" in out.stdout, out.stderr
    sr = pydicom.dcmread(tmp_path / "png-sr.dcm")
    ref = sr.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0].ReferencedSOPSequence[0]
    assert ref.ReferencedSOPClassUID == "1.2.840.10008.5.1.4.1.1.7" and sr.PatientID == ""  # a Secondary Capture
    assert dcmtk("dsrdump", str(tmp_path / "png-sr.dcm")).returncode == 0

    ln = listen(sqlite_engine, local_lake)
    files = write_phantoms(tmp_path / "dcm", [12])
    original = pydicom.dcmread(files[0])
    assert send(ln.scp.port, [original]) == [0]
    with sqlite_engine.connect() as conn:
        tid, key = conn.execute(select(transaction.c.transaction_id, transaction.c.sr_key)
                                .where(transaction.c.source == "dicom")).one()
    out = run_cxr("dicom", "sr", str(tid), tmp_path / "dicom-sr.dcm", env=env)
    assert out.returncode == 0, out.stderr
    data = (tmp_path / "dicom-sr.dcm").read_bytes()
    assert data == local_lake.get(key)  # the lake's copy and `cxr dicom sr` are the same report
    assert not [s for s in phi_values(files) if s.encode() in data]
    with sqlite_engine.connect() as conn:
        n_boxes = conn.execute(select(func.count()).select_from(pred_bounding_box)
                               .where(pred_bounding_box.c.transaction_id == tid)).scalar_one()
    assert len(read_findings(pydicom.dcmread(io.BytesIO(data)))) == n_boxes


def test_the_view_of_a_lateral_upload_has_no_report(run_cxr, tmp_path, sqlite_engine, local_lake):
    env = {"CXR_DB_URL": sqlite_engine.url.render_as_string(False), "CXR_LAKE_URL": local_lake.url,
           "CXR_MODELS_DIR": str(MODELS)}
    phantom_dataset(13, view="RL").save_as(tmp_path / "lateral.dcm", enforce_file_format=True)
    out = run_cxr("ingest", tmp_path / "lateral.dcm", env=env)
    assert out.returncode == 0 and "not run: lateral view (ViewPosition RL)" in out.stderr, out.stderr
    _one_line_error(run_cxr("dicom", "sr", "1", tmp_path / "x.dcm", env=env), 3, "not run through the detector")
