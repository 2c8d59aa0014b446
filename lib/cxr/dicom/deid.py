"""DICOM de-identification following the DICOM PS3.15 Annex E basic profile.

Applied to every DICOM upload before anything is stored, shown or logged. What it does:

* the attributes the basic profile lists as X (remove) are deleted, those listed as Z
  (empty) are emptied; PatientID becomes a keyed pseudonym (profile action D);
* every person name (VR PN), age (AS) and free text (LO/SH/LT/ST/UT/UC/AE) not on a short
  technical keep-list is removed, wherever it sits, including inside sequences;
* private tags and overlay/curve groups (60xx, 50xx) are removed;
* dates (DA, DT) are shifted back by a per-patient number of days derived from a keyed hash
  of the original PatientID ("Retain Longitudinal Temporal Information with Modified Dates"
  option), so intervals within one patient survive; times (TM) are emptied;
* every instance UID (VR UI that is not a registered class/transfer-syntax UID) is replaced by
  ``2.25.<int>`` from an HMAC-SHA256 of the original under a secret key, so the same input
  UID always maps to the same output UID (studies and series stay grouped) and nobody without
  the key can reverse or confirm it;
* PatientIdentityRemoved=YES, DeidentificationMethod and its code sequence record what was done.

A table-driven implementation over pydicom rather than a dependency: the available
packages either fill names with random fake values (dicognito) or need recipe files and
do not shift dates per patient (deid); the generic VR rules here also cover attributes
the table does not name. Burned-in text in the pixels is not removed: a DICOM flagged
BurnedInAnnotation=YES gets a warning.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from datetime import date, datetime, timedelta
from pathlib import Path

from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import UID

from cxr.config import Settings

# PS3.15 Table E.1-1, basic profile, action X (remove) for attributes that carry identity
# or free text; the generic VR rules below catch the rest (PN, AS, text VRs, UIDs, dates).
REMOVE = frozenset({
    "AccessionNumber", "AcquisitionComments", "AdditionalPatientHistory", "AdmissionID",
    "AdmittingDiagnosesCodeSequence", "AdmittingDiagnosesDescription", "Allergies", "Arbitrary",
    "AuthorObserverSequence", "BranchOfService", "ContentCreatorName", "ContributionDescription",
    "CountryOfResidence", "CurrentPatientLocation", "DerivationDescription", "DeviceSerialNumber",
    "DeviceUID", "EthnicGroup", "FrameComments", "IdentifyingComments", "ImageComments",
    "InstitutionAddress", "InstitutionCodeSequence", "InstitutionName", "InstitutionalDepartmentName",
    "IssuerOfPatientID", "MedicalAlerts", "MedicalRecordLocator", "MilitaryRank", "ModifiedAttributesSequence",
    "NameOfPhysiciansReadingStudy", "Occupation", "OperatorsName", "OriginalAttributesSequence",
    "OtherPatientIDs", "OtherPatientIDsSequence", "OtherPatientNames", "PatientAddress", "PatientAge",
    "PatientBirthName", "PatientBirthTime", "PatientComments", "PatientInsurancePlanCodeSequence",
    "PatientMotherBirthName", "PatientReligiousPreference", "PatientSize", "PatientState",
    "PatientTelephoneNumbers", "PatientWeight", "PerformedProcedureStepDescription",
    "PerformedProcedureStepID", "PerformingPhysicianIdentificationSequence", "PerformingPhysicianName",
    "PersonAddress", "PersonTelephoneNumbers", "PhysiciansOfRecord", "PhysiciansOfRecordIdentificationSequence",
    "PhysiciansReadingStudyIdentificationSequence", "PregnancyStatus", "ProtocolName",
    "ReferencedPatientSequence", "ReferringPhysicianAddress", "ReferringPhysicianIdentificationSequence",
    "ReferringPhysicianTelephoneNumbers", "RegionOfResidence", "RequestAttributesSequence",
    "RequestedProcedureDescription", "RequestedProcedureID", "RequestingPhysician", "RequestingService",
    "ResponsibleOrganization", "ResponsiblePerson", "ScheduledProcedureStepDescription",
    "SeriesDescription", "SmokingStatus", "SpecialNeeds", "StationName", "StudyDescription",
    "StudyComments", "TextComments", "TextString", "TimezoneOffsetFromUTC", "VerifyingObserverSequence",
    "LastMenstrualDate", "PatientTransportArrangements", "VisitComments", "ReasonForStudy",
    "ReasonForTheRequestedProcedure", "ReferencedStudySequence", "SourceApplicationEntityTitle",
})
# Action Z (keep the attribute, empty its value): type 2 attributes of the modules we keep.
EMPTY = frozenset({
    "PatientName", "PatientBirthDate", "PatientSex", "ReferringPhysicianName", "StudyID",
    "StudyTime", "SeriesTime", "ContentTime", "AcquisitionTime", "InstanceCreationTime",
})
# Free-text attributes that are technical, not personal, and kept (everything else in a
# text VR is removed).
KEEP_TEXT = frozenset({
    "Manufacturer", "ManufacturerModelName", "SoftwareVersions", "WindowCenterWidthExplanation",
    "RescaleType", "LUTExplanation", "DeidentificationMethod", "CodeValue", "CodingSchemeDesignator",
    "CodeMeaning", "CodingSchemeVersion", "SpecificCharacterSet",
    "ImplementationVersionName", "LossyImageCompressionMethod",
})
TEXT_VRS = frozenset({"LO", "SH", "LT", "ST", "UT", "UC", "AE"})
KEY_ENV_FILE = "deid.key"
METHOD = "PS3.15 basic profile, dates shifted, UIDs keyed-hash (cxr)"  # LO: 64 chars max
# PS3.16 CID 7050 codes for the options applied.
METHOD_CODES = (
    ("113100", "Basic Application Confidentiality Profile"),
    ("113107", "Retain Longitudinal Temporal Information Modified Dates Option"),
)
MAX_SHIFT_DAYS = 3650


def load_key(settings: Settings) -> bytes:
    """The HMAC key: CXR_DEID_KEY, or a random key made once under ``<data_dir>/secrets/``.

    Several hosts that must map UIDs the same way share CXR_DEID_KEY (a secret, never in git).
    """
    if settings.deid_key is not None and (raw := settings.deid_key.get_secret_value()):
        return raw.encode()
    path = Path(settings.data_dir) / "secrets" / KEY_ENV_FILE
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process made it first
            return path.read_bytes().strip()
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_hex(32))
    return path.read_bytes().strip()


def _mac(key: bytes, purpose: str, value: str) -> bytes:
    return hmac.new(key, f"{purpose}\x00{value}".encode(), hashlib.sha256).digest()


def keyed_hash(key: bytes, purpose: str, value: str | bytes) -> str:
    """HMAC-SHA256 of ``value`` under ``key`` for ``purpose``, as 64 hex characters.

    The ``study_key``, ``patient_key`` and ``upload_key`` columns hold these: stable for the same
    input, and neither reversible nor confirmable without the key. Each purpose has its own
    domain, so a patient key never equals the stored PatientID pseudonym's digest.
    """
    data = value if isinstance(value, bytes) else value.strip().encode()
    return hmac.new(key, purpose.encode() + b"\x00" + data, hashlib.sha256).hexdigest()


def provenance_keys(ds: Dataset, key: bytes) -> dict[str, str | None]:
    """``study_key`` and ``patient_key`` of an identified header (call before :func:`deidentify`)."""
    study = str(ds.get("StudyInstanceUID", "") or "")
    patient = str(ds.get("PatientID", "") or "")
    return {"study_key": keyed_hash(key, "study-key", study) if study else None,
            "patient_key": keyed_hash(key, "patient-key", patient) if patient else None}


def replace_uid(value: str, key: bytes) -> str:
    """A stable, non-reversible replacement UID (``2.25.`` + 128 bits, at most 44 characters)."""
    return "2.25." + str(int.from_bytes(_mac(key, "uid", value.strip())[:16], "big"))


def derived_uid(key: bytes, purpose: str, value: str) -> str:
    """A UID that cxr makes for an object of its own (a report, its series), stable for ``(purpose,
    value)`` and unlinkable to it without the key (``2.25.`` + 128 bits of an HMAC)."""
    return "2.25." + str(int.from_bytes(_mac(key, f"derived-uid:{purpose}", value)[:16], "big"))


def pseudonym(patient_id: str, key: bytes) -> str:
    return "ANON-" + _mac(key, "patient", patient_id.strip()).hex()[:16].upper()


def date_shift(patient_id: str, key: bytes) -> timedelta:
    days = int.from_bytes(_mac(key, "date", patient_id.strip())[:4], "big") % MAX_SHIFT_DAYS + 1
    return timedelta(days=days)


def _shift_da(value: str, shift: timedelta) -> str:
    try:
        return (datetime.strptime(value.strip()[:8], "%Y%m%d").date() - shift).strftime("%Y%m%d")
    except ValueError:
        return ""


def _shift_dt(value: str, shift: timedelta) -> str:
    # Keep only the shifted date: time of day and UTC offset are dropped.
    return _shift_da(value, shift) if len(value.strip()) >= 8 else ""


def _is_registered_uid(value: str) -> bool:
    uid = UID(str(value))
    return uid.name != str(uid)  # a registered UID (class, transfer syntax, ...) has a name


def _clean(ds: Dataset, key: bytes, shift: timedelta) -> None:
    for elem in list(ds):
        tag = elem.tag
        if tag.is_private or tag.group in range(0x5000, 0x5100) or tag.group in range(0x6000, 0x6100):
            del ds[tag]
            continue
        kw = elem.keyword
        vr = elem.VR
        if kw in REMOVE:
            del ds[tag]
        elif kw in EMPTY:
            elem.value = ""
        elif vr == "SQ":
            for item in elem.value or []:
                _clean(item, key, shift)
        elif vr in ("PN", "AS"):
            del ds[tag]
        elif vr in TEXT_VRS and kw not in KEEP_TEXT:
            del ds[tag]
        elif vr == "UI":
            if elem.VM == 0 or elem.value is None:
                continue
            values = elem.value if elem.VM > 1 else [elem.value]
            new = [v if _is_registered_uid(v) else replace_uid(str(v), key) for v in values if v]
            elem.value = new if elem.VM > 1 else (new[0] if new else "")
        elif vr == "DA" and elem.value:
            values = elem.value if elem.VM > 1 else [elem.value]
            new = [_shift_da(str(v), shift) for v in values]
            elem.value = new if elem.VM > 1 else new[0]
        elif vr == "DT" and elem.value:
            elem.value = _shift_dt(str(elem.value if elem.VM == 1 else elem.value[0]), shift)
        elif vr == "TM":
            elem.value = ""


def deidentify(ds: Dataset, key: bytes) -> list[str]:
    """De-identify ``ds`` in place; return warnings (no identifying value is ever in them)."""
    warnings: list[str] = []
    original_id = str(ds.get("PatientID", "") or "")
    shift = date_shift(original_id, key)
    _clean(ds, key, shift)
    ds.PatientID = pseudonym(original_id, key) if original_id else ""
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = METHOD
    codes = Sequence()
    for value, meaning in METHOD_CODES:
        item = Dataset()
        item.CodeValue = value
        item.CodingSchemeDesignator = "DCM"
        item.CodeMeaning = meaning
        codes.append(item)
    ds.DeidentificationMethodCodeSequence = codes
    ds.LongitudinalTemporalInformationModified = "MODIFIED"
    meta = getattr(ds, "file_meta", None)
    if meta is not None:
        if "MediaStorageSOPInstanceUID" in meta and "SOPInstanceUID" in ds:
            meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        for kw in ("SourceApplicationEntityTitle", "SendingApplicationEntityTitle",
                   "ReceivingApplicationEntityTitle", "PrivateInformationCreatorUID", "PrivateInformation"):
            if kw in meta:
                del meta[kw]
    if str(ds.get("BurnedInAnnotation", "")).upper() == "YES":
        warnings.append("DICOM says the pixels carry burned-in annotation; text in the image is not removed")
    return warnings


def shifted(day: date, patient_id: str, key: bytes) -> date:
    """The date ``day`` becomes for ``patient_id`` (for tests and audits holding the key)."""
    return day - date_shift(patient_id, key)
