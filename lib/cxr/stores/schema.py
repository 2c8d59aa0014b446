"""The metadata DB's three 3NF tables (the seed's names, plus what a real system needs).

The seed's queries still read: ``image(image_id, bucket, folder, image_file)``,
``transaction(transaction_id, image_id, time, cs_thr, nms_thr)`` and
``pred_bounding_box(pred_bbox_id, transaction_id, pred_class, pred_cs, x_min, y_min, x_max, y_max)``.
Added: auto-increment ids, the stored bytes' unique ``sha256``, image size/format/``created_at``,
``model_version``/``run_id`` lineage, the class id beside its name, foreign keys and indexes;
(migration 0002) the keyed ``study_key``/``patient_key``/``upload_key`` of an image and the
``source``/``skip_reason`` of a transaction; (migration 0003) the transaction's DICOM SR in the lake
(``sr_key``) and its delivery to the PACS (``sr_status``, ``sr_error``); (migration 0004) the image's
intensity statistics, the uploading user of a transaction, and the people tables: ``app_user``,
``user_session``, ``audit_event`` (+ ``audit_head``), ``review`` and ``review_box``.
Alembic migrations in ``cxr/stores/migrations`` create exactly these tables.
"""

from __future__ import annotations

from typing import Literal

from sqlalchemy import (
    BigInteger,
    Boolean,
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
from sqlalchemy.dialects import mysql

# BIGINT on MySQL, INTEGER (rowid alias, so auto-increment) on SQLite.
Id = BigInteger().with_variant(Integer(), "sqlite")
# Microseconds on MySQL too (its DATETIME keeps whole seconds): the audit chain hashes the exact time.
PreciseTime = DateTime(timezone=False).with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")

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
    Column("intensity_mean", Float, nullable=True, comment="mean of the [0, 1] pixels the detector saw (drift)"),
    Column("intensity_std", Float, nullable=True, comment="standard deviation of those pixels (drift)"),
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
    Column("user_id", Id, ForeignKey("app_user.user_id", ondelete="RESTRICT"), nullable=True,
           comment="who uploaded it (a dashboard login; NULL for the CLI, DICOM and older rows)"),
    Index("ix_transaction_image_id", "image_id"),
    Index("ix_transaction_time", "time"),
    Index("ix_transaction_sr_status", "sr_status"),
    Index("ix_transaction_user_id", "user_id"),
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

# -- people: logins, audit, review (migration 0004) ------------------------------------------------
app_user = Table(
    "app_user",
    metadata,
    Column("user_id", Id, primary_key=True, autoincrement=True),
    Column("username", String(64), nullable=False, unique=True),
    Column("role", String(16), nullable=False, comment="uploader | radiologist | admin"),
    Column("password_hash", String(255), nullable=True, comment="argon2id; NULL: signs in only through the SSO proxy"),
    Column("enabled", Boolean, nullable=False, default=True),
    Column("created_at", DateTime(timezone=False), nullable=False),
    Column("failed_logins", Integer, nullable=False, default=0, comment="consecutive failures since the last success"),
    Column("locked_until", DateTime(timezone=False), nullable=True),
    Column("last_login_at", DateTime(timezone=False), nullable=True),
    sqlite_autoincrement=True,
)

user_session = Table(
    "user_session",
    metadata,
    Column("session_id", Id, primary_key=True, autoincrement=True),
    Column("token_hash", String(64), nullable=False, unique=True, comment="sha256 of the cookie's random token"),
    Column("user_id", Id, ForeignKey("app_user.user_id", ondelete="CASCADE"), nullable=False),
    Column("kind", String(16), nullable=False, comment="password | proxy"),
    Column("created_at", DateTime(timezone=False), nullable=False),
    Column("expires_at", DateTime(timezone=False), nullable=False),
    Column("ended_at", DateTime(timezone=False), nullable=True, comment="logout or disable"),
    Column("client_addr", String(64), nullable=True),
    Index("ix_user_session_user_id", "user_id"),
    sqlite_autoincrement=True,
)

audit_event = Table(
    "audit_event",
    metadata,
    Column("event_id", Id, primary_key=True, autoincrement=False, comment="previous event_id + 1 (no gaps)"),
    Column("time", PreciseTime, nullable=False, comment="UTC, microseconds"),
    Column("username", String(64), nullable=True, comment="who: a cxr user, os:<login> for the CLI; NULL for an unknown login name"),
    Column("role", String(16), nullable=True),
    Column("action", String(32), nullable=False),
    Column("object_type", String(32), nullable=True),
    Column("object_ids", String(255), nullable=True, comment="comma-separated ids; never a file name or a patient value"),
    Column("outcome", String(16), nullable=False, comment="success | failure | denied"),
    Column("client_addr", String(64), nullable=True),
    Column("detail", String(512), nullable=True, comment="JSON of counts and fixed reasons; no PHI"),
    Column("prev_hash", String(64), nullable=False),
    Column("row_hash", String(64), nullable=False, comment="sha256 of this row's fields and prev_hash"),
    Index("ix_audit_event_time", "time"),
    Index("ix_audit_event_username", "username"),
)

audit_head = Table(
    "audit_head",
    metadata,
    Column("head_id", Integer, primary_key=True, autoincrement=False),
    Column("last_event_id", BigInteger, nullable=False),
    Column("last_hash", String(64), nullable=False),
    comment="one row: the chain's end; appends lock it, so events are numbered and chained one at a time",
)

review = Table(
    "review",
    metadata,
    Column("review_id", Id, primary_key=True, autoincrement=True),
    Column("transaction_id", Id, ForeignKey("transaction.transaction_id", ondelete="RESTRICT"), nullable=False),
    Column("reviewer_id", Id, ForeignKey("app_user.user_id", ondelete="RESTRICT"), nullable=False),
    Column("reviewer_role", String(16), nullable=False, comment="the reviewer's role when reviewing"),
    Column("time", DateTime(timezone=False), nullable=False, comment="UTC"),
    Column("verdict", String(16), nullable=False, comment="findings | no_finding"),
    Column("source", String(16), nullable=False, comment="dashboard | import"),
    Column("reader_ref", String(64), nullable=True, comment="an imported CSV's rad_id (a reader code, not a name)"),
    Index("ix_review_transaction_id", "transaction_id"),
    sqlite_autoincrement=True,
)

review_box = Table(
    "review_box",
    metadata,
    Column("review_box_id", Id, primary_key=True, autoincrement=True),
    Column("review_id", Id, ForeignKey("review.review_id", ondelete="CASCADE"), nullable=False),
    Column("pred_bbox_id", Id, ForeignKey("pred_bounding_box.pred_bbox_id", ondelete="RESTRICT"), nullable=True,
           comment="the predicted box judged; NULL for a box the reviewer added"),
    Column("action", String(8), nullable=False, comment="accept | reject | correct | add"),
    Column("class_name", String(64), nullable=True, comment="final class (NULL when rejected)"),
    Column("class_id", SmallInteger, nullable=True),
    Column("x_min", Float, nullable=True),
    Column("y_min", Float, nullable=True),
    Column("x_max", Float, nullable=True),
    Column("y_max", Float, nullable=True),
    Index("ix_review_box_review_id", "review_id"),
    Index("ix_review_box_pred_bbox_id", "pred_bbox_id"),
    sqlite_autoincrement=True,
)

#: The stage tables (the joined rows of the backup and the warehouse come from these three).
TABLES = (image, transaction, pred_bounding_box)
#: The people tables of migration 0004.
PEOPLE_TABLES = (app_user, user_session, audit_event, audit_head, review, review_box)

#: ``transaction.source``: where the image came from.
Source = Literal["dashboard", "ingest", "dicom", "backfill"]
SOURCES: tuple[Source, ...] = ("dashboard", "ingest", "dicom", "backfill")

#: ``app_user.role``, least to most: each role may do what the ones before it may.
Role = Literal["uploader", "radiologist", "admin"]
ROLES: tuple[Role, ...] = ("uploader", "radiologist", "admin")
#: ``review_box.action`` and ``review.verdict``.
REVIEW_ACTIONS = ("accept", "reject", "correct", "add")
VERDICTS = ("findings", "no_finding")
#: ``transaction.sr_status``: the DICOM SR's delivery to ``CXR_DICOM_RESULTS_DEST`` (NULL: never sent).
SrStatus = Literal["pending", "delivered", "failed"]
