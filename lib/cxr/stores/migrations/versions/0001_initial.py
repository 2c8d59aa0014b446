"""The three 3NF tables: image, transaction, pred_bounding_box.

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "image",
        sa.Column("image_id", Id, primary_key=True, autoincrement=True),
        sa.Column("bucket", sa.String(255), nullable=False),
        sa.Column("folder", sa.String(255), nullable=False),
        sa.Column("image_file", sa.String(255), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("width", sa.Integer, nullable=False),
        sa.Column("height", sa.Integer, nullable=False),
        sa.Column("source_format", sa.String(16), nullable=False),
        sa.Column("original_name", sa.String(255), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("image_id", name="pk_image"),
        sa.UniqueConstraint("sha256", name="uq_image_sha256"),
        mysql_engine="InnoDB",
        mysql_charset="utf8mb4",
        sqlite_autoincrement=True,  # never reuse ids after a purge (the warehouse watermark relies on it)
    )
    op.create_table(
        "transaction",
        sa.Column("transaction_id", Id, primary_key=True, autoincrement=True),
        sa.Column("image_id", Id, nullable=False),
        sa.Column("time", sa.DateTime(), nullable=False),
        sa.Column("cs_thr", sa.Float, nullable=False),
        sa.Column("nms_thr", sa.Float, nullable=False),
        sa.Column("model_version", sa.String(64), nullable=False),
        sa.Column("run_id", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("transaction_id", name="pk_transaction"),
        sa.ForeignKeyConstraint(["image_id"], ["image.image_id"], name="fk_transaction_image_id_image", ondelete="RESTRICT"),
        mysql_engine="InnoDB",
        mysql_charset="utf8mb4",
        sqlite_autoincrement=True,  # never reuse ids after a purge (the warehouse watermark relies on it)
    )
    op.create_index("ix_transaction_image_id", "transaction", ["image_id"])
    op.create_index("ix_transaction_time", "transaction", ["time"])
    op.create_table(
        "pred_bounding_box",
        sa.Column("pred_bbox_id", Id, primary_key=True, autoincrement=True),
        sa.Column("transaction_id", Id, nullable=False),
        sa.Column("pred_class", sa.String(64), nullable=False),
        sa.Column("class_id", sa.SmallInteger, nullable=False),
        sa.Column("pred_cs", sa.Float, nullable=False),
        sa.Column("x_min", sa.Float, nullable=False),
        sa.Column("y_min", sa.Float, nullable=False),
        sa.Column("x_max", sa.Float, nullable=False),
        sa.Column("y_max", sa.Float, nullable=False),
        sa.PrimaryKeyConstraint("pred_bbox_id", name="pk_pred_bounding_box"),
        sa.ForeignKeyConstraint(["transaction_id"], ["transaction.transaction_id"],
                                name="fk_pred_bounding_box_transaction_id_transaction", ondelete="CASCADE"),
        mysql_engine="InnoDB",
        mysql_charset="utf8mb4",
        sqlite_autoincrement=True,  # never reuse ids after a purge (the warehouse watermark relies on it)
    )
    op.create_index("ix_pred_bounding_box_transaction_id", "pred_bounding_box", ["transaction_id"])


def downgrade() -> None:
    op.drop_table("pred_bounding_box")
    op.drop_table("transaction")
    op.drop_table("image")
