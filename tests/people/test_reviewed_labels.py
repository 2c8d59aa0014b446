"""Reviewed labels end to end: a perfect reviewer's import and a dashboard review survive the backup
with purge (Spark), a warehouse rebuild and the mart export; the perfect reviewer's COCO equals the
phantoms' ground truth. Also: reviews added after the warehouse load reach it, and the backup keeps a
transaction reviewed after its copy was written."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from ingest_factory import FakePredictor
from people_factory import OPERATOR, exported_boxes, phantom_boxes, same_boxes, stems_by_image, user
from sqlalchemy import func, select

from cxr.auth import audit
from cxr.backup.job import run_backup
from cxr.ingest.pipeline import ingest_files
from cxr.mart.export import export_mart, load_instances
from cxr.mart.filters import MartFilters
from cxr.model.classes import SEED_CLASSES
from cxr.review import rules
from cxr.review.importer import import_vindr
from cxr.review.store import predicted_boxes, save_review
from cxr.stores.backup_reader import read_audit, read_reviews
from cxr.stores.catalog import Stores
from cxr.stores.schema import review, transaction
from cxr.stores.warehouse import IMAGES_COLLECTION
from cxr.stores.watermark import REVIEWS, get_watermark
from cxr.warehouse import etl

pytestmark = pytest.mark.integration


@pytest.fixture
def study(tmp_path, make_settings, sqlite_engine, local_lake, warehouse_db, cli):
    """6 PNG + 2 DICOM phantoms ingested with the fake detector; `rita` imports their ground truth."""
    cli("phantoms", "6", tmp_path / "png", "--size", "256", check=True)
    cli("phantoms", "2", tmp_path / "dcm", "--dicom", "--seed", "70", "--size", "256", check=True)
    settings = make_settings(db_url=str(sqlite_engine.url), lake_url=local_lake.url)
    stores = Stores.open(settings, engine=sqlite_engine, lake=local_lake, warehouse=warehouse_db)
    ingest_files([tmp_path / "png" / "images", tmp_path / "dcm" / "images"], stores=stores, predictor=FakePredictor())
    user(sqlite_engine, "rita", "radiologist")
    for sub in ("png", "dcm"):
        import_vindr(stores, tmp_path / sub / "labels.csv", tmp_path / sub / "images", "rita", SEED_CLASSES,
                     actor=OPERATOR)
    truth = {**phantom_boxes(tmp_path / "png" / "annotations" / "instances.json"),
             **phantom_boxes(tmp_path / "dcm" / "annotations" / "instances.json")}
    stems = stems_by_image(sqlite_engine, settings, [tmp_path / "png" / "images", tmp_path / "dcm" / "images"])
    return stores, truth, stems


def _export(stores, out, **filters):
    export_mart(out, MartFilters(**filters), database=stores.warehouse, lake=stores.lake, classes=SEED_CLASSES,
                progress=False, engine=stores.engine, actor=OPERATOR)
    return load_instances(out)


def test_perfect_reviewer_coco_equals_the_phantom_ground_truth(study, tmp_path):
    stores, truth, stems = study
    etl.run_incremental(stores=stores)
    coco = _export(stores, tmp_path / "mart")  # the default is reviewed: reviews exist
    assert coco["info"]["labels"] == "reviewed" and all(im["reviewed"] for im in coco["images"])
    assert same_boxes(exported_boxes(coco, stems), truth)
    assert all(a["provenance"] == "reviewed" and "score" not in a for a in coco["annotations"])
    card = (tmp_path / "mart" / "README.md").read_text()
    assert "radiologists' reviewed labels" in card and "1 radiologist" in card and "rita" not in card
    both = _export(stores, tmp_path / "both", labels="both")
    per = {p: sum(1 for a in both["annotations"] if a["provenance"] == p) for p in ("reviewed", "predicted")}
    assert per["reviewed"] == len(coco["annotations"]) and per["predicted"] > 0
    assert f"| reviewed (radiologists) | {per['reviewed']} |" in (tmp_path / "both" / "README.md").read_text()
    # training reads the reviewed labels, also from an export that has both
    from cxr.model.datasets import read_coco

    samples = read_coco(tmp_path / "both", SEED_CLASSES)
    assert len(samples) == len(truth) and sum(len(x.boxes) for x in samples) == per["reviewed"]
    assert sum(len(x.boxes) for x in read_coco(tmp_path / "both", SEED_CLASSES, labels="all")) == sum(per.values())
    predicted = _export(stores, tmp_path / "pred", labels="predicted")
    assert all(a["provenance"] == "predicted" for a in predicted["annotations"])
    exports = audit.events(stores.engine, action="export")
    assert [e["outcome"] for e in exports] == ["success"] * 3 and '"labels": "reviewed"' in exports[0]["detail"]


def test_reviews_survive_backup_purge_rebuild_and_mart(study, tmp_path, spark, warehouse_db):
    stores, truth, stems = study
    engine = stores.engine
    reviewer = user(engine, "rita", "radiologist")
    with engine.connect() as conn:
        tid = conn.execute(select(func.min(transaction.c.transaction_id))).scalar_one()
        boxes = predicted_boxes(conn, tid)
    decisions = [rules.Decision("accept", boxes[0].pred_bbox_id, boxes[0].class_name, boxes[0].class_id, boxes[0].box),
                 *[rules.Decision("reject", b.pred_bbox_id) for b in boxes[1:]]]
    dashboard_review = save_review(engine, tid, reviewer, "findings", decisions)
    loaded = etl.run_incremental(stores=stores)
    docs = {d["image_id"]: d for d in warehouse_db[IMAGES_COLLECTION].find({}, {"_id": 0})}
    n_reviews = sum(len(t["reviews"]) for d in docs.values() for t in d["transactions"])
    assert n_reviews == 9 and loaded.reviews_added == 0
    # a review after the load reaches the loaded transaction, once
    late = save_review(engine, tid, reviewer, "no_finding", rules.no_finding(boxes))
    assert etl.run_incremental(stores=stores).reviews_added == 1
    assert etl.run_incremental(stores=stores).reviews_added == 0
    assert get_watermark(warehouse_db, REVIEWS) == late
    docs = {d["image_id"]: d for d in warehouse_db[IMAGES_COLLECTION].find({}, {"_id": 0})}

    before = (datetime.now(UTC) + timedelta(days=1)).replace(tzinfo=None)
    report = run_backup(stores=stores, before=before, purge_db=True, spark=spark)
    assert report.purged["transaction"] == 8 and report.purged["review"] == 10
    assert any(c["check"] == "audit chain" and c["ok"] for c in report.verification)
    assert all(c["ok"] for c in report.verification)
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(review)).scalar_one() == 0
    backed = read_reviews(stores.lake)
    assert backed["review_id"].nunique() == 10 and dashboard_review in set(backed["review_id"])
    copied = read_audit(stores.lake)
    in_db = audit.events(engine)
    assert list(copied["row_hash"])[: len(copied)] == [e["row_hash"] for e in in_db][: len(copied)]
    assert audit.verify(engine).ok and len(in_db) >= len(copied)  # audit rows are never purged

    rebuilt = etl.run_rebuild(stores=stores)
    assert get_watermark(warehouse_db, REVIEWS) == late and rebuilt.images == 8
    after = {d["image_id"]: d for d in warehouse_db[IMAGES_COLLECTION].find({}, {"_id": 0})}
    assert after == docs  # the rebuild from the backup gives what the incremental loads gave, reviews and all
    assert sum(len(t["reviews"]) for d in after.values() for t in d["transactions"]) == 10
    coco = _export(stores, tmp_path / "mart-after")
    got = exported_boxes(coco, stems)
    redone = stems[docs_first_image(docs, tid)]  # its newest review is the late "no finding" one
    assert got[redone] == [] and same_boxes({k: v for k, v in got.items() if k != redone},
                                             {k: v for k, v in truth.items() if k != redone})


def docs_first_image(docs: dict, tid: int) -> int:
    return next(i for i, d in docs.items() if any(t["transaction_id"] == tid for t in d["transactions"]))


def test_a_review_added_after_the_copy_keeps_its_transaction_for_the_next_run(study, spark, warehouse_db):
    stores, _truth, _stems = study
    engine = stores.engine
    etl.run_incremental(stores=stores)
    reviewer = user(engine, "rita", "radiologist")
    with engine.connect() as conn:
        tid = conn.execute(select(func.min(transaction.c.transaction_id))).scalar_one()
        boxes = predicted_boxes(conn, tid)

    def late_review(_manifest):  # between the write and the purge
        save_review(engine, tid, reviewer, "no_finding", rules.no_finding(boxes))
        etl.run_incremental(stores=stores)

    before = (datetime.now(UTC) + timedelta(days=1)).replace(tzinfo=None)
    first = run_backup(stores=stores, before=before, purge_db=True, spark=spark, after_write=late_review)
    assert first.purged["kept_reviewed_after_backup"] == 1 and first.purged["transaction"] == 7
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(review)).scalar_one() == 2  # import + late review
    second = run_backup(stores=stores, before=before, purge_db=True, spark=spark)
    assert second.purged["transaction"] == 1 and second.purged["review"] == 2
    assert read_reviews(stores.lake)["review_id"].nunique() == 9
