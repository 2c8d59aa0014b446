"""The metadata DB's three 3NF tables (the seed's names, plus what a real system needs).

The seed's queries still read: ``image(image_id, bucket, folder, image_file)``,
``transaction(transaction_id, image_id, time, cs_thr, nms_thr)`` and
``pred_bounding_box(pred_bbox_id, transaction_id, pred_class, pred_cs, x_min, y_min, x_max, y_max)``.
Added: auto-increment ids, the stored bytes' unique ``sha256``, image size/format/``created_at``,
``model_version``/``run_id`` lineage, the class id beside its name, foreign keys and indexes;
(migration 0002) the keyed ``study_key``/``patient_key``/``upload_key`` of an image and the
``source``/``skip_reason`` of a transaction; (migration 0003) the transaction's DICOM SR in the lake
(``sr_key``) and its delivery to the PACS (``sr_status``, ``sr_error``).
Alembic migrations in ``cxr/stores/migrations`` create exactly these tables.
"""

from __future__ import annotations

from typing import Literal

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Table,
)

# BIGINT on MySQL, INTEGER (rowid alias, so auto-increment) on SQLite.
Id = BigInteger().with_variant(Integer(), "sqlite")

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_name)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

image = Table(
    "image",
    metadata,
    Column("image_id", Id, primary_key=True, autoincrement=True),
    Column("bucket", String(255), nullable=False),
    Column("folder", String(255), nullable=False),
    Column("image_file", String(255), nullable=False, comment="object name inside folder: <sha256>.<ext>"),
    Column("sha256", String(64), nullable=False, unique=True, comment="sha256 of the stored bytes"),
    Column("width", Integer, nullable=False),
    Column("height", Integer, nullable=False),
    Column("source_format", String(16), nullable=False, comment="png | jpeg | dicom"),
    Column("original_name", String(255), nullable=True, comment="upload's file name (never a DICOM patient value)"),
    Column("created_at", DateTime(timezone=False), nullable=False),
    Column("study_key", String(64), nullable=True, comment="keyed hash of the DICOM StudyInstanceUID"),
    Column("patient_key", String(64), nullable=True, comment="keyed hash of the DICOM PatientID (never the ID)"),
    Column("upload_key", String(64), nullable=True, comment="keyed hash of the original upload's bytes"),
    Index("ix_image_study_key", "study_key"),
    Index("ix_image_patient_key", "patient_key"),
    Index("ix_image_upload_key", "upload_key"),
    sqlite_autoincrement=True,
)

transaction = Table(
    "transaction",
    metadata,
    Column("transaction_id", Id, primary_key=True, autoincrement=True),
    Column("image_id", Id, ForeignKey("image.image_id", ondelete="RESTRICT"), nullable=False),
    Column("time", DateTime(timezone=False), nullable=False, comment="UTC time of the prediction"),
    Column("cs_thr", Float, nullable=False, comment="confidence-score threshold used"),
    Column("nms_thr", Float, nullable=False, comment="NMS IoU threshold used"),
    Column("model_version", String(64), nullable=False),
    Column("run_id", String(64), nullable=False, comment="ingest batch / dashboard session that made it"),
    Column("source", String(16), nullable=True, comment="dashboard | ingest | dicom | backfill"),
    Column("skip_reason", String(255), nullable=True, comment="why the detector did not run (else NULL)"),
    Column("sr_key", String(255), nullable=True, comment="lake key of the de-identified DICOM SR (sr/...)"),
    Column("sr_status", String(16), nullable=True, comment="SR delivery to the PACS: pending | delivered | failed"),
    Column("sr_error", String(255), nullable=True, comment="why the last SR delivery failed (never PHI)"),
    Index("ix_transaction_image_id", "image_id"),
    Index("ix_transaction_time", "time"),
    Index("ix_transaction_sr_status", "sr_status"),
    sqlite_autoincrement=True,
)

pred_bounding_box = Table(
    "pred_bounding_box",
    metadata,
    Column("pred_bbox_id", Id, primary_key=True, autoincrement=True),
    Column("transaction_id", Id, ForeignKey("transaction.transaction_id", ondelete="CASCADE"), nullable=False),
    Column("pred_class", String(64), nullable=False, comment="class name"),
    Column("class_id", SmallInteger, nullable=False, comment="index into the model's class list"),
    Column("pred_cs", Float, nullable=False, comment="confidence score"),
    Column("x_min", Float, nullable=False),
    Column("y_min", Float, nullable=False),
    Column("x_max", Float, nullable=False),
    Column("y_max", Float, nullable=False),
    Index("ix_pred_bounding_box_transaction_id", "transaction_id"),
    sqlite_autoincrement=True,
)

TABLES = (image, transaction, pred_bounding_box)

#: ``transaction.source``: where the image came from.
Source = Literal["dashboard", "ingest", "dicom", "backfill"]
SOURCES: tuple[Source, ...] = ("dashboard", "ingest", "dicom", "backfill")

#: ``transaction.sr_status``: the DICOM SR's delivery to ``CXR_DICOM_RESULTS_DEST`` (NULL: never sent).
SrStatus = Literal["pending", "delivered", "failed"]
