"""DICOM network: a transaction's structured report in the lake and its delivery to the PACS.

- ``transaction.sr_key``: lake key of the de-identified DICOM SR of the transaction
  (``sr/<sha256[:2]>/<sha256>/<transaction_id>.dcm``, beside the image), NULL when none was made;
- ``transaction.sr_status``: delivery of the (identified, never stored) SR to
  ``CXR_DICOM_RESULTS_DEST``: pending | delivered | failed; NULL when it was never sent;
- ``transaction.sr_error``: why the last delivery failed (the destination and the DICOM reason;
  never a patient value).

Existing rows keep their values; the new columns are NULL for them.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("transaction") as batch:
        batch.add_column(sa.Column("sr_key", sa.String(255), nullable=True))
        batch.add_column(sa.Column("sr_status", sa.String(16), nullable=True))
        batch.add_column(sa.Column("sr_error", sa.String(255), nullable=True))
        batch.create_index("ix_transaction_sr_status", ["sr_status"])


def downgrade() -> None:
    with op.batch_alter_table("transaction") as batch:
        batch.drop_index("ix_transaction_sr_status")
        batch.drop_column("sr_error")
        batch.drop_column("sr_status")
        batch.drop_column("sr_key")
