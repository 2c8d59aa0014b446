"""A stored transaction's findings as DICOM Structured Reports (:mod:`cxr.dicom.sr`).

Two reports exist for a transaction, built from the same DB rows (``transaction`` and its
``pred_bounding_box`` rows) and differing only in the image header they reference:

* the **de-identified** report (:func:`deidentified_report`) references the stored, de-identified
  DICOM in the lake; it goes to the lake beside the image (``sr/...``, linked by
  ``transaction.sr_key``) and is what ``cxr dicom sr`` writes. For a PNG or JPEG upload, which has
  no DICOM header, it references a Secondary Capture header made for the image (UIDs derived
  from its sha256 with the de-identification key; no patient, no study of the hospital's);
* the **identified** report (:func:`identified_report`) references the original instance as the
  PACS holds it and carries its patient module: it is built in memory from the header that
  arrived over the network and sent back; never written anywhere.

The report's UIDs and content time derive from the transaction (its image's sha256, its id, its
time), so the same transaction always gives the same bytes.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import datetime

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import SecondaryCaptureImageStorage
from sqlalchemy import Engine, select, update

from cxr.config import Settings
from cxr.dicom.deid import derived_uid, load_key
from cxr.dicom.sr import Finding, ReportIdentity, build_report, encode
from cxr.errors import InputError
from cxr.model.pixels import quiet_pydicom
from cxr.stores import layout
from cxr.stores.catalog import Stores
from cxr.stores.schema import SrStatus, image, pred_bounding_box, transaction


@dataclass(frozen=True)
class StoredTransaction:
    """One transaction as the DB holds it, with its image and boxes (no patient data)."""

    transaction_id: int
    time: datetime
    model_version: str
    skip_reason: str | None
    sha256: str
    image_key: str
    source_format: str
    width: int
    height: int
    findings: tuple[Finding, ...]


def load_transaction(engine: Engine, transaction_id: int) -> StoredTransaction:
    """The transaction ``transaction_id`` with its image and boxes, or an InputError."""
    t, i, b = transaction.c, image.c, pred_bounding_box.c
    with engine.connect() as conn:
        row = conn.execute(
            select(t.transaction_id, t.time, t.model_version, t.skip_reason, i.sha256, i.folder, i.image_file,
                   i.source_format, i.width, i.height)
            .select_from(transaction.join(image, image.c.image_id == t.image_id))
            .where(t.transaction_id == int(transaction_id))).first()
        if row is None:
            raise InputError(f"no transaction {transaction_id} in the DB (purged by the backup, or never stored)")
        boxes = conn.execute(select(b.pred_class, b.class_id, b.pred_cs, b.x_min, b.y_min, b.x_max, b.y_max)
                             .where(b.transaction_id == row.transaction_id).order_by(b.pred_bbox_id)).all()
    findings = tuple(Finding(r.pred_class, int(r.class_id), float(r.pred_cs), float(r.x_min), float(r.y_min),
                             float(r.x_max), float(r.y_max)) for r in boxes)
    return StoredTransaction(int(row.transaction_id), row.time, str(row.model_version), row.skip_reason,
                             str(row.sha256), f"{row.folder}/{row.image_file}", str(row.source_format),
                             int(row.width), int(row.height), findings)


def _check_reportable(t: StoredTransaction) -> None:
    if t.skip_reason:
        raise InputError(f"transaction {t.transaction_id} was not run through the detector ({t.skip_reason}): "
                         "there are no findings to report")


def stored_header(stores: Stores, t: StoredTransaction, key: bytes, stored_bytes: bytes | None = None) -> Dataset:
    """The de-identified header the report references: the stored DICOM's (read from the lake unless
    its bytes are handed in), or a Secondary Capture header made for a PNG/JPEG image."""
    if t.source_format == "dicom":
        data = stored_bytes if stored_bytes is not None else stores.lake.get(t.image_key)
        with quiet_pydicom():
            return dcmread(io.BytesIO(data), stop_before_pixels=True)
    ds = Dataset()
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = derived_uid(key, "raster-instance", t.sha256)
    ds.StudyInstanceUID = derived_uid(key, "raster-study", t.sha256)
    ds.SeriesInstanceUID = derived_uid(key, "raster-series", t.sha256)
    ds.Modality = "OT"
    ds.Rows, ds.Columns = t.height, t.width
    ds.PatientID = ds.PatientName = ds.PatientBirthDate = ds.PatientSex = ""
    ds.StudyID = ds.AccessionNumber = ds.StudyDate = ds.StudyTime = ds.ReferringPhysicianName = ""
    return ds


def _identity(settings: Settings, t: StoredTransaction, key: bytes, study_uid: str, *,
              identified: bool) -> ReportIdentity:
    kind = "identified" if identified else "deidentified"
    return ReportIdentity(
        sop_instance_uid=derived_uid(key, f"sr-instance-{kind}", f"{t.sha256}:{t.transaction_id}"),
        series_instance_uid=derived_uid(key, f"sr-series-{kind}", study_uid),
        content_time=t.time, model_name=settings.model_name, model_version=t.model_version,
    )


def deidentified_report(stores: Stores, t: StoredTransaction, *, stored_bytes: bytes | None = None) -> bytes:
    """The de-identified SR of ``t`` as DICOM bytes (see the module)."""
    _check_reportable(t)
    key = load_key(stores.settings)
    header = stored_header(stores, t, key, stored_bytes)
    identity = _identity(stores.settings, t, key, str(header.StudyInstanceUID), identified=False)
    return encode(build_report(header, t.findings, identity))


def identified_report(settings: Settings, t: StoredTransaction, header: Dataset) -> Dataset:
    """The SR of ``t`` on the original, identified ``header`` (in memory only: it carries PHI)."""
    _check_reportable(t)
    key = load_key(settings)
    return build_report(header, t.findings, _identity(settings, t, key, str(header.StudyInstanceUID), identified=True))


def store_report(stores: Stores, t: StoredTransaction, data: bytes) -> str:
    """Put the de-identified SR beside the image (``sr/...``), then link it from the transaction."""
    key = layout.sr_key(t.sha256, t.transaction_id)
    stores.lake.put(key, data, content_type="application/dicom")
    with stores.engine.begin() as conn:
        conn.execute(update(transaction).where(transaction.c.transaction_id == t.transaction_id).values(sr_key=key))
    return key


def set_delivery(engine: Engine, transaction_id: int, status: SrStatus, error: str | None = None) -> None:
    """Record the SR delivery state of a transaction (``error``: the destination and reason, no PHI)."""
    with engine.begin() as conn:
        conn.execute(update(transaction).where(transaction.c.transaction_id == int(transaction_id))
                     .values(sr_status=status, sr_error=error[:255] if error else None))
