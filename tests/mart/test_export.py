"""The mart export against real stores: SecantusDB (warehouse_db) and the lake (local dir and moto S3)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import pytest
from PIL import Image

from cxr.errors import IntegrityError
from cxr.stores.layout import rendition_key
from cxr.mart.export import DOWNLOAD_LOG, export_mart
from cxr.mart.filters import MartFilters
from mart_docs import CLASSES, T0, CountingLake, make_doc, png_bytes, populate, sha_of

pytestmark = pytest.mark.integration


def _docs() -> list[dict]:
    """12 images, 1-3 transactions each over 8 days, two model versions, sizes varying."""
    return [make_doc(i, width=40 + 4 * i, height=36 + 2 * (i % 4), n_tx=1 + i % 3, boxes_per_tx=i % 4,
                     day=i % 6, model_version="2" if i % 2 else "1") for i in range(1, 13)]


def warehouse_counts(db, f: MartFilters) -> tuple[int, int]:
    """(selected transactions, kept boxes) computed by the warehouse itself (aggregation pipeline)."""
    match: dict = {}
    if f.since or f.until:
        match["transactions.time"] = {k: v for k, v in (("$gte", f.since), ("$lt", f.until)) if v}
    if f.model_version:
        match["transactions.model_version"] = f.model_version
    pipe: list[dict] = [{"$unwind": "$transactions"}, {"$match": match}]
    if f.latest:
        pipe += [{"$sort": {"transactions.time": -1, "transactions.transaction_id": -1}},
                 {"$group": {"_id": "$image_id", "tx": {"$first": "$transactions"}}}]
    else:
        pipe += [{"$project": {"tx": "$transactions"}}]
    box_match: dict = {"tx.pred_bbox.score": {"$gte": f.min_score}}
    if f.classes:
        box_match["tx.pred_bbox.class_name"] = {"$in": list(f.classes)}
    n_tx = len(list(db["images"].aggregate(pipe)))
    n_box = len(list(db["images"].aggregate(pipe + [{"$unwind": "$tx.pred_bbox"}, {"$match": box_match}])))
    return n_tx, n_box


FILTERS = {
    "default": MartFilters(),
    "all-transactions": MartFilters(latest=False),
    "date-range+score": MartFilters(since=T0 + timedelta(days=2), until=T0 + timedelta(days=6), min_score=0.45),
    "version+classes": MartFilters(model_version="2", classes=("Cardiomegaly", "Nodule/Mass"), latest=False),
}


@pytest.mark.parametrize("name", list(FILTERS))
def test_export_is_valid_coco_and_matches_the_warehouse(populated, tmp_path, name):
    from pycocotools.coco import COCO

    db, lake = populated(_docs())
    f = FILTERS[name]
    res = export_mart(tmp_path / "out", f, database=db, lake=lake, classes=CLASSES, workers=4, progress=False)
    ann_file = tmp_path / "out" / "annotations" / "instances.json"
    coco = COCO(str(ann_file))
    n_tx, n_box = warehouse_counts(db, f)
    assert n_tx > 0 and n_box > 0
    assert len(coco.getImgIds()) == res.images == n_tx
    assert len(coco.getAnnIds()) == res.annotations == n_box
    assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == list(f.classes and sorted(f.classes, key=CLASSES.index) or CLASSES)
    # every image named exists and decodes at its recorded size
    for img in coco.loadImgs(coco.getImgIds()):
        with Image.open(tmp_path / "out" / "images" / img["file_name"]) as im:
            im.load()
            assert im.size == (img["width"], img["height"])
    # the split files partition the export
    split_ids = [set(COCO(str(ann_file.with_name(f"instances_{s}.json"))).getImgIds()) for s in ("train", "val")]
    assert split_ids[0] | split_ids[1] == set(coco.getImgIds()) and not split_ids[0] & split_ids[1]
    card = (tmp_path / "out" / "README.md").read_text()
    assert f"watermark (highest transaction_id loaded): {max(t['transaction_id'] for d in _docs() for t in d['transactions'])}" in card
    assert "| annotations | " in card and f"| {n_box} |" in card


def test_export_from_s3_lake(warehouse_db, s3_lake, tmp_path):
    from pycocotools.coco import COCO

    docs = _docs()[:5]
    populate(warehouse_db, s3_lake, docs)
    res = export_mart(tmp_path / "out", database=warehouse_db, lake=s3_lake, classes=CLASSES, workers=4, progress=False)
    coco = COCO(str(tmp_path / "out" / "annotations" / "instances.json"))
    assert len(coco.getImgIds()) == res.images == 5 and res.downloaded == 5
    assert "s3://" in (tmp_path / "out" / "README.md").read_text()


def test_interrupted_export_resumes_without_downloading_again(warehouse_db, local_lake, tmp_path):
    docs = _docs()
    populate(warehouse_db, local_lake, docs)
    out = tmp_path / "out"
    first = CountingLake(local_lake, interrupt_after=5)
    with pytest.raises(KeyboardInterrupt):
        export_mart(out, database=warehouse_db, lake=first, classes=CLASSES, workers=2, progress=False)
    assert not (out / "annotations" / "instances.json").exists()
    done = [json.loads(line)["file"] for line in (out / DOWNLOAD_LOG).read_text().splitlines()]
    assert 0 < len(done) <= 5 and not list((out / "images").glob(".tmp-*"))

    second = CountingLake(local_lake)
    res = export_mart(out, database=warehouse_db, lake=second, classes=CLASSES, workers=2, progress=False)
    assert second.total == len(docs) - len(done) == res.downloaded and res.skipped == len(done)
    assert not set(second.gets) & {rendition_key(d["sha256"]) for d in docs if f"{d['image_id']}_{d['sha256'][:12]}.png" in done}
    assert (out / "annotations" / "instances.json").is_file()

    # a damaged file is fetched again, and only that one
    victim = out / "images" / done[0]
    victim.write_bytes(victim.read_bytes()[:-10])
    third = CountingLake(local_lake)
    res = export_mart(out, database=warehouse_db, lake=third, classes=CLASSES, workers=2, progress=False)
    assert third.total == 1 == res.downloaded and res.skipped == len(docs) - 1


def test_missing_image_fails_loudly_without_writing_coco(warehouse_db, local_lake, tmp_path):
    docs = _docs()[:6]
    populate(warehouse_db, local_lake, docs)
    gone = rendition_key(docs[2]["sha256"])
    data = local_lake.get(gone)
    local_lake.delete(gone)
    out = tmp_path / "out"
    with pytest.raises(IntegrityError, match=r"1 of 6 image\(s\) could not be fetched.*" + gone):
        export_mart(out, database=warehouse_db, lake=local_lake, classes=CLASSES, workers=3, progress=False)
    assert not (out / "annotations").exists() and not (out / "README.md").exists()
    assert len(list((out / "images").iterdir())) == 5
    local_lake.put(gone, data)
    counting = CountingLake(local_lake)
    export_mart(out, database=warehouse_db, lake=counting, classes=CLASSES, workers=3, progress=False)
    assert counting.gets == {gone: 1}


def test_transient_failures_are_retried_then_reported(warehouse_db, local_lake, tmp_path):
    docs = _docs()[:4]
    populate(warehouse_db, local_lake, docs)
    flaky = CountingLake(local_lake, flaky=2)
    res = export_mart(tmp_path / "a", database=warehouse_db, lake=flaky, classes=CLASSES, retries=2, backoff=0.01, progress=False)
    assert res.downloaded == 4 and set(flaky.gets.values()) == {3}
    with pytest.raises(IntegrityError, match="4 of 4 .*ConnectionError: simulated network failure 2"):
        export_mart(tmp_path / "b", database=warehouse_db, lake=CountingLake(local_lake, flaky=2), classes=CLASSES,
                    retries=1, backoff=0.01, progress=False)


def test_bad_rendition_is_an_integrity_error(warehouse_db, local_lake, tmp_path):
    docs = _docs()[:3]
    populate(warehouse_db, local_lake, docs)
    warehouse_db["images"].update_one({"image_id": docs[1]["image_id"]}, {"$set": {"width": 999}})
    key = rendition_key(docs[2]["sha256"])
    local_lake.put(key, local_lake.get(key)[:-40])  # truncated object
    with pytest.raises(IntegrityError, match=r"2 of 3 image\(s\) could not be fetched") as err:
        export_mart(tmp_path / "out", database=warehouse_db, lake=local_lake, classes=CLASSES, progress=False)
    assert "but the warehouse records 999x" in str(err.value) and f"{key}: does not decode as PNG" in str(err.value)
    assert not (tmp_path / "out" / "annotations").exists()


def test_cli_exports_and_rejects_bad_input_in_one_line(services, warehouse_db, local_lake, tmp_path, run_cxr):
    from cxr.config import load_settings
    from cxr.stores.db import make_engine, upgrade

    upgrade(make_engine(load_settings().resolved_db_url))  # exports are audited in the metadata DB (issue 14)
    populate(warehouse_db, local_lake, _docs()[:4])
    env = {"CXR_WAREHOUSE_URL": services["CXR_WAREHOUSE_URL"], "CXR_WAREHOUSE_DB": warehouse_db.name,
           "CXR_LAKE_URL": local_lake.url}
    ok = run_cxr("mart", tmp_path / "out", "--min-score", "0.4", "--no-progress", env=env)
    assert ok.returncode == 0, ok.stderr
    assert "4 images" in ok.stdout and (tmp_path / "out" / "annotations" / "instances.json").is_file()
    bad = run_cxr("mart", tmp_path / "o2", "--since", "last week", env=env)
    assert bad.returncode == 3 and bad.stderr.strip().startswith("cxr: error: --since: 'last week'")
    assert "Traceback" not in bad.stderr and not (tmp_path / "o2").exists()
    unknown = run_cxr("mart", tmp_path / "o3", "--classes", "Fracture", env=env)
    assert unknown.returncode == 3 and "unknown class 'Fracture'" in unknown.stderr and "Traceback" not in unknown.stderr


def test_documents_made_by_the_warehouse_transform_export(warehouse_db, local_lake, tmp_path):
    """Contract with stage 4: documents built by cxr.warehouse.documents from JOINED_COLUMNS rows."""
    from cxr.stores.queries import JOINED_COLUMNS
    from cxr.warehouse.documents import documents_from_rows

    rows = []
    for image_id in (1, 2):
        sha = sha_of(image_id)
        base = {"image_id": image_id, "sha256": sha, "bucket": "lake", "folder": f"images/{sha[:2]}",
                "image_file": f"{sha}.dicom", "width": 50, "height": 40, "source_format": "dicom",
                "created_at": datetime(2024, 6, 1), "transaction_id": image_id, "time": datetime(2024, 6, 1, image_id),
                "cs_thr": 0.5, "nms_thr": 0.5, "model_version": "3", "run_id": "r", "study_key": None,
                "patient_key": None, "source": "ingest", "skip_reason": None,
                "user_id": None, "intensity_mean": None, "intensity_std": None}  # migration 0004
        nulls = dict.fromkeys(("pred_bbox_id", "pred_class", "class_id", "pred_cs", "x_min", "y_min", "x_max", "y_max"))
        if image_id == 1:  # two boxes
            rows += [{**base, "pred_bbox_id": 10 + k, "pred_class": CLASSES[k], "class_id": k, "pred_cs": 0.9,
                      "x_min": 1.0, "y_min": 2.0, "x_max": 11.0, "y_max": 22.0} for k in range(2)]
        else:  # a transaction without boxes: NULL box columns (LEFT JOIN)
            rows.append({**base, **nulls})
        local_lake.put(rendition_key(sha), png_bytes(50, 40, image_id))
    assert all(set(r) == set(JOINED_COLUMNS) for r in rows)
    warehouse_db["images"].insert_many(list(documents_from_rows(rows)))
    res = export_mart(tmp_path / "out", database=warehouse_db, lake=local_lake, classes=CLASSES, progress=False)
    assert (res.images, res.annotations) == (2, 2)
    coco = json.loads((tmp_path / "out" / "annotations" / "instances.json").read_text())
    assert coco["images"][0]["date_captured"] == "2024-06-01 01:00:00" and coco["images"][0]["model_version"] == "3"
    assert [a["bbox"] for a in coco["annotations"]] == [[1.0, 2.0, 10.0, 20.0]] * 2
    assert [a["category_id"] for a in coco["annotations"]] == [1, 2]
