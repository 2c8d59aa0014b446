"""The metadata DB layer on SQLite and on MariaDB: migrations, auto-increment ids, bound parameters."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
from sqlalchemy import insert, inspect, select, text
from sqlalchemy.exc import IntegrityError

from cxr.stores import db
from cxr.stores.schema import image, pred_bounding_box, transaction

NASTY = "Robert'); DROP TABLE image;-- \" \\ %s %(x)s ? :name `x` ü 文字 🚑"


def _image_row(sha: str, name: str | None = None) -> dict:
    return {"bucket": "cxr-test-lake", "folder": f"images/{sha[:2]}", "image_file": f"{sha}.png", "sha256": sha,
            "width": 512, "height": 512, "source_format": "png", "original_name": name,
            "created_at": dt.datetime(2024, 1, 2, 3, 4, 5)}


def _sha() -> str:
    return uuid.uuid4().hex * 2


@pytest.mark.integration
def test_upgrade_creates_the_three_tables(db_engine):
    names = set(db.table_names(db_engine))
    assert {"image", "transaction", "pred_bounding_box", "alembic_version"} <= names
    assert db.current_revision(db_engine) is not None
    cols = {c["name"] for c in inspect(db_engine).get_columns("pred_bounding_box")}
    assert {"pred_bbox_id", "transaction_id", "pred_class", "pred_cs", "x_min", "y_min", "x_max", "y_max"} <= cols
    # a second upgrade is a no-op
    assert db.upgrade(db_engine) == db.current_revision(db_engine)


@pytest.mark.integration
def test_auto_increment_ids_and_nasty_strings_round_trip(db_engine):
    with db_engine.begin() as conn:
        id1 = conn.execute(insert(image).values(**_image_row(_sha(), NASTY))).inserted_primary_key[0]
        id2 = conn.execute(insert(image).values(**_image_row(_sha(), "plain.png"))).inserted_primary_key[0]
        tid = conn.execute(insert(transaction).values(
            image_id=id1, time=dt.datetime(2024, 1, 2), cs_thr=0.5, nms_thr=0.4, model_version="1",
            run_id=NASTY[:64])).inserted_primary_key[0]
        conn.execute(insert(pred_bounding_box), [
            {"transaction_id": tid, "pred_class": "Cardiomegaly", "class_id": 1, "pred_cs": 0.9,
             "x_min": 1.0, "y_min": 2.0, "x_max": 3.0, "y_max": 4.0},
            {"transaction_id": tid, "pred_class": "Nodule/Mass", "class_id": 4, "pred_cs": 0.7,
             "x_min": 5.0, "y_min": 6.0, "x_max": 7.0, "y_max": 8.0},
        ])
    assert id2 > id1 >= 1
    with db_engine.connect() as conn:
        assert conn.execute(select(image.c.original_name).where(image.c.image_id == id1)).scalar_one() == NASTY
        # the value is also usable as a bound parameter in a WHERE clause
        assert conn.execute(select(image.c.image_id).where(image.c.original_name == NASTY)).scalar_one() == id1
        assert conn.execute(select(transaction.c.run_id)).scalar_one() == NASTY[:64]
        ids = conn.execute(select(pred_bounding_box.c.pred_bbox_id).order_by(pred_bounding_box.c.pred_bbox_id)).scalars().all()
        assert len(ids) == 2 and ids[0] < ids[1]
    assert "image" in db.table_names(db_engine)


@pytest.mark.integration
def test_constraints_hold(db_engine):
    sha = _sha()
    with db_engine.begin() as conn:
        conn.execute(insert(image).values(**_image_row(sha)))
    with pytest.raises(IntegrityError), db_engine.begin() as conn:  # sha256 is unique
        conn.execute(insert(image).values(**_image_row(sha)))
    with pytest.raises(IntegrityError), db_engine.begin() as conn:  # foreign key to image
        conn.execute(insert(transaction).values(image_id=999_999, time=dt.datetime(2024, 1, 1), cs_thr=0.5,
                                                nms_thr=0.5, model_version="1", run_id="r"))


@pytest.fixture
def empty_mariadb_url(services):
    """URL of an empty, unmigrated MariaDB database of its own."""
    from sqlalchemy.engine import make_url

    url = make_url(services["CXR_DB_URL"])
    name = f"cxr_t_{uuid.uuid4().hex[:12]}"
    admin = db.make_engine(url.render_as_string(hide_password=False), pool_size=1)
    with admin.begin() as conn:
        conn.execute(text(f"CREATE DATABASE `{name}`"))
    yield url.set(database=name).render_as_string(hide_password=False)
    with admin.begin() as conn:
        conn.execute(text(f"DROP DATABASE IF EXISTS `{name}`"))
    admin.dispose()


@pytest.mark.integration
@pytest.mark.parametrize("kind", ["sqlite", "mariadb"])
def test_cli_db_upgrade_then_status(kind, run_cxr, tmp_path, request):
    url = f"sqlite:///{tmp_path / 'cli.db'}" if kind == "sqlite" else request.getfixturevalue("empty_mariadb_url")
    up = run_cxr("db", "upgrade", env={"CXR_DB_URL": url})
    assert up.returncode == 0, up.stderr
    assert "image, pred_bounding_box, transaction" in up.stdout
    assert "***" in up.stdout or kind == "sqlite"  # the password is masked
    engine = db.make_engine(url)
    try:
        assert {"image", "transaction", "pred_bounding_box"} <= set(db.table_names(engine))
    finally:
        engine.dispose()
    st = run_cxr("db", "status", env={"CXR_DB_URL": url})
    assert st.returncode == 0, st.stderr
    assert "image: 0" in st.stdout and "pred_bounding_box: 0" in st.stdout
