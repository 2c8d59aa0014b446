"""Provenance of images and predictions: keyed study, patient and upload hashes; source; why detection was skipped.

- ``image.study_key``: keyed hash of the DICOM StudyInstanceUID (the views of one study share it);
- ``image.patient_key``: keyed hash of the DICOM PatientID (patient-level splits; never the ID);
- ``image.upload_key``: keyed hash of the original upload's bytes (matching an outside reading
  study to a stored, de-identified image whose own sha256 differs from the original file's);
- ``transaction.source``: dashboard | ingest | dicom | backfill (NULL for rows made before this);
- ``transaction.skip_reason``: why the detector did not run (e.g. a lateral view), else NULL.

All keyed with the de-identification key (HMAC-SHA256): none of them can be reversed or confirmed
without it. Existing rows keep their values; the new columns are NULL for them.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("image") as batch:
        batch.add_column(sa.Column("study_key", sa.String(64), nullable=True))
        batch.add_column(sa.Column("patient_key", sa.String(64), nullable=True))
        batch.add_column(sa.Column("upload_key", sa.String(64), nullable=True))
        batch.create_index("ix_image_study_key", ["study_key"])
        batch.create_index("ix_image_patient_key", ["patient_key"])
        batch.create_index("ix_image_upload_key", ["upload_key"])
    with op.batch_alter_table("transaction") as batch:
        batch.add_column(sa.Column("source", sa.String(16), nullable=True))
        batch.add_column(sa.Column("skip_reason", sa.String(255), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("transaction") as batch:
        batch.drop_column("skip_reason")
        batch.drop_column("source")
    with op.batch_alter_table("image") as batch:
        batch.drop_index("ix_image_upload_key")
        batch.drop_index("ix_image_patient_key")
        batch.drop_index("ix_image_study_key")
        batch.drop_column("upload_key")
        batch.drop_column("patient_key")
        batch.drop_column("study_key")
