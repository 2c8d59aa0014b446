"""The SR of a prediction (TID 1500 with highdicom), its code table, and the view-selection rule."""

from __future__ import annotations

import io
from datetime import datetime

import numpy as np
import pydicom
import pytest
from dicom_helpers import CountingPredictor, dcmtk, phantom_dataset
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from cxr.dicom import codes
from cxr.dicom.sr import Finding, ReportIdentity, build_report, encode, header_of, read_findings
from cxr.ingest import views
from cxr.model.classes import SEED_CLASSES

IDENTITY = ReportIdentity("2.25.11", "2.25.12", datetime(2026, 3, 4, 5, 6, 7, 890000), "cxr-demo", "1.0.0")
FINDINGS = [Finding("Cardiomegaly", 1, 0.8734, 10.25, 20.5, 100.0, 90.75),
            Finding("Nodule/Mass", 4, 0.61, 120.0, 30.0, 140.5, 52.25)]


@pytest.mark.unit
def test_every_seed_class_has_one_code_snomed_where_the_standard_has_one():
    assert set(codes.CLASS_CODES) == set(SEED_CLASSES)
    assert codes.CLASS_CODES["Cardiomegaly"].scheme_designator == "SCT"
    assert {c.scheme_designator for c in codes.CLASS_CODES.values()} <= {"SCT", "DCM", codes.PRIVATE_SCHEME}
    assert len({(c.value, c.scheme_designator) for c in codes.CLASS_CODES.values()}) == 5
    other = codes.finding_code("Pleural effusion", 10)
    assert (other.value, other.scheme_designator, other.meaning) == ("CXR-10", "99CXR", "Pleural effusion")
    for name, code in codes.CLASS_CODES.items():
        assert codes.class_of(code.value, code.scheme_designator) == name


@pytest.mark.unit
def test_report_has_a_polyline_a_code_and_a_score_per_box_and_references_the_image():
    header = header_of(phantom_dataset(3, size=160))
    sr = build_report(header, FINDINGS, IDENTITY)
    assert sr.SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.34"  # Comprehensive 3D SR
    assert sr.StudyInstanceUID == header.StudyInstanceUID and sr.PatientID == header.PatientID
    assert sr.SOPInstanceUID == "2.25.11" and sr.SeriesInstanceUID == "2.25.12"
    evidence = sr.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0].ReferencedSOPSequence[0]
    assert evidence.ReferencedSOPInstanceUID == header.SOPInstanceUID
    back = read_findings(pydicom.dcmread(io.BytesIO(encode(sr))))
    assert [(f.class_name, f.score) for f in back] == [("Cardiomegaly", 0.8734), ("Nodule/Mass", 0.61)]
    for got, want in zip(back, FINDINGS):
        assert np.allclose([got.x_min, got.y_min, got.x_max, got.y_max], [want.x_min, want.y_min, want.x_max, want.y_max])
    assert "NOT FOR CLINICAL USE" in sr.SeriesDescription
    assert (str(sr.ContentDate), str(sr.ContentTime)[:6]) == ("20260304", "050607")


@pytest.mark.unit
def test_a_report_without_findings_says_so_and_the_same_inputs_give_the_same_bytes():
    header = header_of(phantom_dataset(4, size=160))
    empty = build_report(header, [], IDENTITY)
    assert read_findings(empty) == []
    text = repr(empty)
    assert codes.WITHOUT_FINDINGS.value in text and codes.WITH_FINDINGS.value not in text
    assert codes.WITH_FINDINGS.value in repr(build_report(header, FINDINGS, IDENTITY))
    assert encode(build_report(header, FINDINGS, IDENTITY)) == encode(build_report(header, FINDINGS, IDENTITY))


@pytest.mark.integration
def test_dsrdump_reads_the_report_with_its_boxes(tmp_path):
    path = tmp_path / "sr.dcm"
    path.write_bytes(encode(build_report(header_of(phantom_dataset(5, size=160)), FINDINGS, IDENTITY)))
    out = dcmtk("dsrdump", "+Pl", str(path))
    assert out.returncode == 0 and "Imaging Measurement Report" in out.stdout, out.stdout + out.stderr
    assert "(287272002,SCT,\"Cardiomegaly\")" in out.stdout and "(NODULE-MASS,99CXR,\"Nodule/Mass\")" in out.stdout
    assert "POLYLINE,10.25/20.5,100/20.5,100/90.75,10.25/90.75,10.25/20.5" in out.stdout
    assert "\"0.8734\"" in out.stdout and "error" not in out.stderr.lower()


def _header(**attrs) -> Dataset:
    ds = Dataset()
    for k, v in attrs.items():
        setattr(ds, k, v)
    return ds


def _view_code(value: str, scheme: str = "SCT") -> Sequence:
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, scheme, "view"
    return Sequence([item])


@pytest.mark.unit
@pytest.mark.parametrize(("attrs", "lateral"), [
    ({"ViewPosition": "LL"}, True), ({"ViewPosition": "RL"}, True), ({"ViewPosition": "PA"}, False),
    ({"ViewPosition": "AP"}, False), ({"ViewPosition": "LLD"}, False), ({"ViewPosition": "RLO"}, False),
    ({"ViewCodeSequence": _view_code("399173006")}, True), ({"ViewCodeSequence": _view_code("399198007", "SRT")}, True),
    ({"ViewCodeSequence": _view_code("399348003")}, False),  # antero-posterior
    ({"ViewPosition": "PA", "ViewCodeSequence": _view_code("399173006")}, False),  # ViewPosition decides
    ({"ImageLaterality": "L"}, False), ({"ImageLaterality": "R", "Laterality": "R"}, False), ({}, False),
])
def test_view_rule(attrs, lateral):
    reason = views.skip_reason(*views.view_attributes(_header(**attrs)))
    assert (reason is not None) == lateral
    if lateral:
        assert reason.startswith("lateral view") and len(reason) <= 255


@pytest.mark.unit
def test_a_lateral_view_is_stored_without_running_the_detector(sqlite_engine, local_lake, make_settings):
    from sqlalchemy import select

    from cxr.ingest.decode import decode_upload
    from cxr.ingest.pipeline import detect, store_detected
    from cxr.stores.catalog import Stores
    from cxr.stores.schema import transaction

    settings = make_settings()
    buf = io.BytesIO()
    phantom_dataset(6, size=128, view="LL").save_as(buf, enforce_file_format=True)
    upload = decode_upload("lateral.dcm", buf.getvalue(), settings)
    predictor = CountingPredictor()
    d = detect(upload, predictor, score_thr=0.5, nms_thr=0.5)
    assert predictor.calls == 0 and d.detections is None and "ViewPosition LL" in d.skip_reason
    res = store_detected(Stores.open(settings, engine=sqlite_engine, lake=local_lake), d, score_thr=0.5,
                         nms_thr=0.5, model_version="t", run_id="r", source="ingest")
    assert res.n_boxes == 0
    with sqlite_engine.connect() as conn:
        assert conn.execute(select(transaction.c.skip_reason)).scalar_one() == d.skip_reason


@pytest.mark.unit
def test_lake_gc_sweeps_an_sr_whose_image_no_row_references_and_keeps_the_others(sqlite_engine, local_lake):
    from datetime import timedelta

    from sqlalchemy import insert

    from cxr.ingest.gc import sweep
    from cxr.stores import layout
    from cxr.stores.schema import image

    kept, orphan = "a" * 64, "b" * 64
    with sqlite_engine.begin() as conn:
        conn.execute(insert(image).values(bucket="lake", folder=f"images/{kept[:2]}", image_file=f"{kept}.dcm",
                                          sha256=kept, width=1, height=1, source_format="dicom",
                                          created_at=datetime(2024, 1, 1)))
    for sha in (kept, orphan):
        local_lake.put(layout.sr_key(sha, 7), b"sr")
    later = datetime.now().astimezone() + timedelta(days=2)
    report = sweep(sqlite_engine, local_lake, timedelta(hours=1), now=later)
    assert report.deleted == [layout.sr_key(orphan, 7)] and local_lake.exists(layout.sr_key(kept, 7))
    assert layout.content_sha256("sr/aa/" + "a" * 64 + "/7.dcm") == kept and layout.content_sha256("sr/x") is None
