"""DICOM de-identification (PS3.15 basic profile) before anything is stored."""

from __future__ import annotations

import io
from datetime import date

import pydicom
import pytest
from ingest_factory import FAKE, make_dicom

from cxr.dicom import deid
from cxr.ingest.decode import decode_upload

pytestmark = pytest.mark.unit


def _stored(settings, data: bytes):
    up = decode_upload("a.dcm", data, settings)
    return up, pydicom.dcmread(io.BytesIO(up.stored_bytes))


def test_no_fake_patient_value_survives(settings):
    up, ds = _stored(settings, make_dicom())
    blob = up.stored_bytes
    for name, value in FAKE.items():
        for variant in {value, value.upper(), value.replace("^", " ")}:
            assert variant.encode() not in blob, name
    assert ds.PatientIdentityRemoved == "YES"
    assert ds.LongitudinalTemporalInformationModified == "MODIFIED"
    assert [c.CodeValue for c in ds.DeidentificationMethodCodeSequence] == ["113100", "113107"]
    assert ds.PatientName == "" and ds.PatientBirthDate == "" and ds.ReferringPhysicianName == ""
    assert ds.PatientID.startswith("ANON-")
    for kw in ("PatientAddress", "InstitutionName", "InstitutionAddress", "OperatorsName", "PerformingPhysicianName",
               "OtherPatientIDs", "StationName", "DeviceSerialNumber", "StudyDescription", "AccessionNumber"):
        assert kw not in ds, kw
    assert not any(elem.tag.is_private for elem in ds.iterall())
    assert all(item.get("PatientName", "") == "" for item in ds.ReferencedImageSequence)


def test_uids_are_replaced_consistently_with_the_key(settings, make_settings, tmp_path):
    data = make_dicom()
    original = pydicom.dcmread(io.BytesIO(data))
    _, a = _stored(settings, data)
    _, b = _stored(settings, data)
    assert a.StudyInstanceUID == b.StudyInstanceUID and a.SOPInstanceUID == b.SOPInstanceUID
    assert a.StudyInstanceUID != original.StudyInstanceUID and a.StudyInstanceUID.startswith("2.25.")
    assert a.file_meta.MediaStorageSOPInstanceUID == a.SOPInstanceUID
    # a reference to the study inside a sequence maps to the same new UID
    assert a.ReferencedImageSequence[0].ReferencedSOPInstanceUID == a.StudyInstanceUID
    # registered UIDs (SOP class, transfer syntax) are kept
    assert a.SOPClassUID == original.SOPClassUID
    assert a.file_meta.TransferSyntaxUID == original.file_meta.TransferSyntaxUID
    # another key gives other UIDs
    other = make_settings(data_dir=tmp_path / "other", deid_key="another-secret-key")
    _, c = _stored(other, data)
    assert c.StudyInstanceUID not in (a.StudyInstanceUID, original.StudyInstanceUID)
    assert len(a.StudyInstanceUID) <= 64


def test_dates_are_shifted_per_patient(settings):
    _, ds = _stored(settings, make_dicom())
    key = deid.load_key(settings)
    expected = deid.shifted(date(2024, 3, 9), FAKE["PatientID"], key).strftime("%Y%m%d")
    assert ds.StudyDate == expected != FAKE["StudyDate"]
    # the interval between acquisition and study is preserved
    assert ds.AcquisitionDate == deid.shifted(date(2024, 3, 8), FAKE["PatientID"], key).strftime("%Y%m%d")
    assert ds.StudyTime == ""


def test_key_file_is_created_once_and_private(settings):
    k1 = deid.load_key(settings)
    k2 = deid.load_key(settings)
    path = settings.data_dir / "secrets" / "deid.key"
    assert k1 == k2 and len(k1) == 64
    assert oct(path.stat().st_mode & 0o777) == "0o600"


def test_phantom_dicom_fake_patient_is_removed(settings):
    from cxr.model.phantoms import dicom_bytes, fake_patient, generate_phantom

    ph = generate_phantom(11, size=96)
    up, ds = _stored(settings, dicom_bytes(ph, patient=fake_patient(11)))
    for name, value in fake_patient(11).items():
        if isinstance(value, str) and len(value) >= 4:
            assert value.encode() not in up.stored_bytes, name


def test_burned_in_annotation_warns(settings):
    up = decode_upload("a.dcm", make_dicom(extra={"BurnedInAnnotation": "YES"}), settings)
    assert any("burned-in" in w for w in up.warnings)


def test_malformed_values_never_reach_logs_or_warnings(settings, caplog, recwarn):
    import logging

    caplog.set_level(logging.DEBUG)
    data = make_dicom(extra={"PatientBirthDate": "Wilhelmina-Secret", "StudyDate": "Bartholomew-Secret",
                             "PatientName": "Zebedee^" + "Q" * 80})
    caplog.clear()  # what writing the test file itself logged does not count
    recwarn.clear()
    up = decode_upload("a.dcm", data, settings)
    text = caplog.text + " ".join(str(w.message) for w in recwarn) + " ".join(up.warnings)
    for value in ("Wilhelmina", "Bartholomew", "Zebedee"):
        assert value not in text
        assert value.encode() not in up.stored_bytes
