"""People in the loop: logins, sessions, the append-only audit trail, radiologists' reviews.

- ``app_user`` (argon2 password hash, role, lock-out counters) and ``user_session`` (the sha256 of
  each session's random token, its expiry);
- ``audit_event``: one row per login, upload, image view, review, export and user change, each
  carrying the hash of the one before (a hash chain); UPDATE and DELETE are refused by triggers
  on SQLite and MySQL/MariaDB. ``audit_head`` holds the chain's end (one row, locked by appends);
- ``review`` (who, when, the verdict) and ``review_box`` (per predicted box: accept, reject or
  correct, plus the boxes a reviewer added, with the final box): nothing is overwritten, a
  second review is a second set of rows;
- ``transaction.user_id`` (who uploaded it), ``image.intensity_mean`` / ``intensity_std`` (what
  the detector saw, for drift monitoring).

Existing rows keep their values; the new columns are NULL for them.

MySQL with binary logging (RDS) needs ``log_bin_trust_function_creators=1`` (a DB parameter
group setting) and the TRIGGER privilege for the migrating user to create the triggers.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
PreciseTime = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
GENESIS = "0" * 64
TABLE_ARGS = {"mysql_engine": "InnoDB", "mysql_charset": "utf8mb4", "sqlite_autoincrement": True}
REFUSED = "audit_event is append-only"


def _people_tables() -> None:
    op.create_table(
        "app_user",
        sa.Column("user_id", Id, primary_key=True, autoincrement=True),
        sa.Column("username", sa.String(64), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("password_hash", sa.String(255), nullable=True),
        sa.Column("enabled", sa.Boolean, nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("failed_logins", sa.Integer, nullable=False),
        sa.Column("locked_until", sa.DateTime(), nullable=True),
        sa.Column("last_login_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("user_id", name="pk_app_user"),
        sa.UniqueConstraint("username", name="uq_app_user_username"),
        **TABLE_ARGS,
    )
    op.create_table(
        "user_session",
        sa.Column("session_id", Id, primary_key=True, autoincrement=True),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("user_id", Id, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        sa.Column("ended_at", sa.DateTime(), nullable=True),
        sa.Column("client_addr", sa.String(64), nullable=True),
        sa.PrimaryKeyConstraint("session_id", name="pk_user_session"),
        sa.UniqueConstraint("token_hash", name="uq_user_session_token_hash"),
        sa.ForeignKeyConstraint(["user_id"], ["app_user.user_id"], name="fk_user_session_user_id_app_user",
                                ondelete="CASCADE"),
        **TABLE_ARGS,
    )
    op.create_index("ix_user_session_user_id", "user_session", ["user_id"])


def _audit_tables() -> None:
    op.create_table(
        "audit_event",
        sa.Column("event_id", Id, primary_key=True, autoincrement=False),
        sa.Column("time", PreciseTime, nullable=False),
        sa.Column("username", sa.String(64), nullable=True),
        sa.Column("role", sa.String(16), nullable=True),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("object_type", sa.String(32), nullable=True),
        sa.Column("object_ids", sa.String(255), nullable=True),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("client_addr", sa.String(64), nullable=True),
        sa.Column("detail", sa.String(512), nullable=True),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("row_hash", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("event_id", name="pk_audit_event"),
        mysql_engine="InnoDB",
        mysql_charset="utf8mb4",
    )
    op.create_index("ix_audit_event_time", "audit_event", ["time"])
    op.create_index("ix_audit_event_username", "audit_event", ["username"])
    head = op.create_table(
        "audit_head",
        sa.Column("head_id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("last_event_id", sa.BigInteger, nullable=False),
        sa.Column("last_hash", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("head_id", name="pk_audit_head"),
        mysql_engine="InnoDB",
        mysql_charset="utf8mb4",
    )
    op.bulk_insert(head, [{"head_id": 1, "last_event_id": 0, "last_hash": GENESIS}])
    dialect = op.get_bind().dialect.name
    for when in ("UPDATE", "DELETE"):
        name = f"audit_event_no_{when.lower()}"
        if dialect == "sqlite":
            op.execute(f"CREATE TRIGGER {name} BEFORE {when} ON audit_event "
                       f"BEGIN SELECT RAISE(ABORT, '{REFUSED}'); END")
        elif dialect in ("mysql", "mariadb"):
            op.execute(f"CREATE TRIGGER {name} BEFORE {when} ON audit_event FOR EACH ROW "
                       f"SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = '{REFUSED}'")
        else:  # the project supports SQLite and MySQL/MariaDB only (cxr.config.DB_SCHEMES)
            raise NotImplementedError(f"no append-only trigger for {dialect}")


def _review_tables() -> None:
    op.create_table(
        "review",
        sa.Column("review_id", Id, primary_key=True, autoincrement=True),
        sa.Column("transaction_id", Id, nullable=False),
        sa.Column("reviewer_id", Id, nullable=False),
        sa.Column("reviewer_role", sa.String(16), nullable=False),
        sa.Column("time", sa.DateTime(), nullable=False),
        sa.Column("verdict", sa.String(16), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("reader_ref", sa.String(64), nullable=True),
        sa.PrimaryKeyConstraint("review_id", name="pk_review"),
        sa.ForeignKeyConstraint(["transaction_id"], ["transaction.transaction_id"],
                                name="fk_review_transaction_id_transaction", ondelete="RESTRICT"),
        sa.ForeignKeyConstraint(["reviewer_id"], ["app_user.user_id"], name="fk_review_reviewer_id_app_user",
                                ondelete="RESTRICT"),
        **TABLE_ARGS,
    )
    op.create_index("ix_review_transaction_id", "review", ["transaction_id"])
    op.create_table(
        "review_box",
        sa.Column("review_box_id", Id, primary_key=True, autoincrement=True),
        sa.Column("review_id", Id, nullable=False),
        sa.Column("pred_bbox_id", Id, nullable=True),
        sa.Column("action", sa.String(8), nullable=False),
        sa.Column("class_name", sa.String(64), nullable=True),
        sa.Column("class_id", sa.SmallInteger, nullable=True),
        sa.Column("x_min", sa.Float, nullable=True),
        sa.Column("y_min", sa.Float, nullable=True),
        sa.Column("x_max", sa.Float, nullable=True),
        sa.Column("y_max", sa.Float, nullable=True),
        sa.PrimaryKeyConstraint("review_box_id", name="pk_review_box"),
        sa.ForeignKeyConstraint(["review_id"], ["review.review_id"], name="fk_review_box_review_id_review",
                                ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["pred_bbox_id"], ["pred_bounding_box.pred_bbox_id"],
                                name="fk_review_box_pred_bbox_id_pred_bounding_box", ondelete="RESTRICT"),
        **TABLE_ARGS,
    )
    op.create_index("ix_review_box_review_id", "review_box", ["review_id"])
    op.create_index("ix_review_box_pred_bbox_id", "review_box", ["pred_bbox_id"])


def upgrade() -> None:
    _people_tables()
    _audit_tables()
    _review_tables()
    with op.batch_alter_table("image") as batch:
        batch.add_column(sa.Column("intensity_mean", sa.Float, nullable=True))
        batch.add_column(sa.Column("intensity_std", sa.Float, nullable=True))
    # A plain ADD COLUMN ... REFERENCES, never a batch copy of the table: on SQLite a batch
    # "move and copy" of `transaction` would DROP it under live foreign keys (and cascade).
    if op.get_bind().dialect.name == "sqlite":  # SQLite takes a REFERENCES clause in ADD COLUMN only
        op.execute('ALTER TABLE "transaction" ADD COLUMN user_id INTEGER '
                   "REFERENCES app_user (user_id) ON DELETE RESTRICT")
    else:
        op.add_column("transaction", sa.Column("user_id", Id, nullable=True))
        op.create_foreign_key("fk_transaction_user_id_app_user", "transaction", "app_user", ["user_id"], ["user_id"],
                              ondelete="RESTRICT")
    op.create_index("ix_transaction_user_id", "transaction", ["user_id"])


def downgrade() -> None:
    op.drop_index("ix_transaction_user_id", "transaction")
    if op.get_bind().dialect.name != "sqlite":
        op.drop_constraint("fk_transaction_user_id_app_user", "transaction", type_="foreignkey")
    op.drop_column("transaction", "user_id")  # SQLite >= 3.35 drops a column that has no index left
    with op.batch_alter_table("image") as batch:
        batch.drop_column("intensity_std")
        batch.drop_column("intensity_mean")
    op.drop_table("review_box")
    op.drop_table("review")
    op.drop_table("audit_head")
    op.drop_table("audit_event")  # drops its triggers with it
    op.drop_table("user_session")
    op.drop_table("app_user")
