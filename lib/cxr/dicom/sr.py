"""cxr's findings as a DICOM Structured Report: a TID 1500 measurement report built with highdicom.

:func:`build_report` takes the header of the image the findings are on (the *evidence*) and
returns a ``Comprehensive3DSR`` dataset, in memory:

* the first measurement group is the image's summary, ``CAD Processing and Findings Summary`` =
  "All algorithms succeeded; with findings" or "...; without findings", so a report with no box
  still says that nothing was found;
* then one planar ROI group per box: the 5-point POLYLINE of its corners (SCOORD in image pixels,
  the top-left corner of the image at 0,0, as the detector's boxes), the finding code of its class
  (:mod:`cxr.dicom.codes`) and its score as a NUM;
* the model is the device observer (name, version, a UID derived from both);
* the patient and study modules come from the evidence: built from an **identified** header (what
  goes back to the PACS) the report is identified too and must stay in memory; built from the
  stored de-identified header it is de-identified.

:func:`read_findings` reads the boxes back (tests, audits).
"""

from __future__ import annotations

import copy
import io
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np
from highdicom.sr import (
    Comprehensive3DSR,
    DeviceObserverIdentifyingAttributes,
    GraphicTypeValues,
    ImageRegion,
    Measurement,
    MeasurementReport,
    MeasurementsAndQualitativeEvaluations,
    ObservationContext,
    ObserverContext,
    PlanarROIMeasurementsAndQualitativeEvaluations,
    QualitativeEvaluation,
    SourceImageForMeasurementGroup,
    SourceImageForRegion,
    TrackingIdentifier,
)
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from cxr.dicom import codes
from cxr.errors import InputError

SERIES_NUMBER = 9901
SERIES_DESCRIPTION = "cxr AI findings - NOT FOR CLINICAL USE"  # LO: 64 characters at most
MANUFACTURER = "cxr (open source)"
#: Type 2 attributes highdicom reads from the evidence; a de-identified header may lack some.
_TYPE2 = ("PatientID", "PatientName", "PatientBirthDate", "PatientSex", "AccessionNumber", "StudyID",
          "StudyDate", "StudyTime", "ReferringPhysicianName")
_PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")


@dataclass(frozen=True)
class Finding:
    """One box of a prediction, in image pixels (``class_id`` None when read back from a table code)."""

    class_name: str
    class_id: int | None
    score: float
    x_min: float
    y_min: float
    x_max: float
    y_max: float

    def polyline(self) -> np.ndarray:
        """The 5 points (column, row) of the box's outline, closed."""
        x0, y0, x1, y1 = self.x_min, self.y_min, self.x_max, self.y_max
        return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]], dtype=np.float64)


@dataclass(frozen=True)
class ReportIdentity:
    """What names one report: its UIDs, its content time and the model that made the findings."""

    sop_instance_uid: str
    series_instance_uid: str
    content_time: datetime
    model_name: str
    model_version: str


def header_of(ds: Dataset) -> Dataset:
    """A deep copy of ``ds`` without its pixel data (an identified header stays in memory only)."""
    out = Dataset()
    for elem in ds:
        if elem.keyword not in _PIXEL_KEYWORDS:
            out.add(copy.deepcopy(elem))
    meta = getattr(ds, "file_meta", None)
    if meta is not None:
        out.file_meta = copy.deepcopy(meta)
    return out


def device_uid(model_name: str, model_version: str) -> str:
    """A stable UID for one model version (the report's Device Observer UID)."""
    return str(generate_uid(entropy_srcs=["cxr model", model_name, model_version]))


def _evidence(header: Dataset) -> Dataset:
    for keyword in ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID"):
        if not header.get(keyword):
            raise InputError(f"the image header has no {keyword}: no report can reference it")
    evidence = header_of(header)
    for keyword in _TYPE2:
        if keyword not in evidence:
            setattr(evidence, keyword, "")
    return evidence


def _observer(identity: ReportIdentity) -> ObservationContext:
    device = DeviceObserverIdentifyingAttributes(
        uid=device_uid(identity.model_name, identity.model_version),
        name=f"{identity.model_name} (not for clinical use)",
        manufacturer_name=MANUFACTURER,
        model_name=f"{identity.model_name} {identity.model_version}",
    )
    return ObservationContext(observer_device_context=ObserverContext(observer_type=codes.DEVICE,
                                                                      observer_identifying_attributes=device))


def _tracking(identity: ReportIdentity, n: int, label: str) -> TrackingIdentifier:
    return TrackingIdentifier(uid=str(generate_uid(entropy_srcs=[identity.sop_instance_uid, str(n)])), identifier=label)


def build_report(header: Dataset, findings: Sequence[Finding], identity: ReportIdentity) -> Comprehensive3DSR:
    """The TID 1500 report of ``findings`` on the image whose header is ``header`` (see the module)."""
    evidence = _evidence(header)
    summary = MeasurementsAndQualitativeEvaluations(
        tracking_identifier=_tracking(identity, 0, "image summary"),
        qualitative_evaluations=[QualitativeEvaluation(codes.SUMMARY,
                                                       codes.WITH_FINDINGS if findings else codes.WITHOUT_FINDINGS)],
        source_images=[SourceImageForMeasurementGroup.from_source_image(evidence)],
    )
    groups: list = [summary]
    source = SourceImageForRegion.from_source_image(evidence)
    for n, f in enumerate(findings, start=1):
        groups.append(PlanarROIMeasurementsAndQualitativeEvaluations(
            tracking_identifier=_tracking(identity, n, f"box {n}"),
            referenced_region=ImageRegion(graphic_type=GraphicTypeValues.POLYLINE, graphic_data=f.polyline(),
                                          source_image=source),
            finding_type=codes.finding_code(f.class_name, -1 if f.class_id is None else f.class_id),
            measurements=[Measurement(name=codes.SCORE, value=round(float(f.score), 6), unit=codes.SCORE_UNIT)],
        ))
    content = MeasurementReport(observation_context=_observer(identity), procedure_reported=codes.PROCEDURE,
                                imaging_measurements=groups)
    when = identity.content_time
    sr = Comprehensive3DSR(
        evidence=[evidence], content=content, series_instance_uid=identity.series_instance_uid,
        series_number=SERIES_NUMBER, sop_instance_uid=identity.sop_instance_uid, instance_number=1,
        manufacturer=MANUFACTURER, is_complete=True, is_final=False, is_verified=False,
        series_description=SERIES_DESCRIPTION, content_date=when.date(), content_time=when.time(),
    )
    scheme = Dataset()
    scheme.CodingSchemeDesignator = codes.PRIVATE_SCHEME
    scheme.CodingSchemeUID = codes.PRIVATE_SCHEME_UID
    scheme.CodingSchemeName = codes.PRIVATE_SCHEME_NAME
    sr.CodingSchemeIdentificationSequence = [scheme]
    # The SR is created by cxr at the content time, not when this function ran: the same inputs
    # give the same bytes (a report rebuilt later is identical).
    sr.InstanceCreationDate, sr.InstanceCreationTime = sr.ContentDate, sr.ContentTime
    sr.SeriesDate, sr.SeriesTime = sr.ContentDate, sr.ContentTime
    for item in sr.get("ContributingEquipmentSequence", []):
        if "ContributionDateTime" in item:
            item.ContributionDateTime = f"{sr.ContentDate}{sr.ContentTime}"
    return sr


def encode(sr: Dataset) -> bytes:
    """A report as DICOM Part 10 bytes (in memory)."""
    buf = io.BytesIO()
    sr.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def read_findings(sr: Dataset) -> list[Finding]:
    """The boxes of a report made by :func:`build_report` (class from the code table, score, corners)."""
    out = []
    root = sr.ContentSequence
    for container in root:
        if container.ConceptNameCodeSequence[0].CodeValue != "126010":  # Imaging Measurements
            continue
        for group in container.ContentSequence:
            items = {i.ConceptNameCodeSequence[0].CodeValue: i for i in group.get("ContentSequence", [])}
            region = next((i for i in group.get("ContentSequence", []) if i.ValueType == "SCOORD"), None)
            if region is None:
                continue
            finding = items[codes.FINDING.value].ConceptCodeSequence[0]
            score = float(items[codes.SCORE.value].MeasuredValueSequence[0].NumericValue)
            pts = np.asarray(region.GraphicData, dtype=np.float64).reshape(-1, 2)
            name = codes.class_of(finding.CodeValue, finding.CodingSchemeDesignator) or str(finding.CodeMeaning)
            class_id = int(finding.CodeValue[4:]) if finding.CodeValue.startswith("CXR-") else None
            out.append(Finding(name, class_id, score, float(pts[:, 0].min()), float(pts[:, 1].min()),
                               float(pts[:, 0].max()), float(pts[:, 1].max())))
    return out
