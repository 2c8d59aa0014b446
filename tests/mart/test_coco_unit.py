"""Pure parts of the mart: filters, COCO building, split, dataset card."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from cxr.errors import ConfigError, InputError, IntegrityError
from cxr.mart.coco import (build_coco, categories, class_counts, class_table, coco_bbox, dataset_card,
                           rendition_key, split_of, subset)
from cxr.stores.warehouse import tunneled_url, warehouse_address
from cxr.mart.filters import MartFilters, select_boxes, select_transactions, to_utc_naive, warehouse_query
from mart_docs import CLASSES, T0, make_doc

pytestmark = pytest.mark.unit
CREATED = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)


def _build(docs, **kw):
    f = MartFilters(**kw)
    return build_coco(docs, f, class_table(docs, CLASSES), created=CREATED)


def test_latest_picks_newest_transaction_and_all_keeps_every_one():
    doc = make_doc(1, n_tx=3)
    assert [t["transaction_id"] for t in select_transactions(doc, MartFilters())] == [12]
    assert [t["transaction_id"] for t in select_transactions(doc, MartFilters(latest=False))] == [10, 11, 12]


def test_date_range_is_half_open_and_applies_before_latest():
    doc = make_doc(3, n_tx=3)  # times T0+3h, T0+1d+3h, T0+2d+3h
    f = MartFilters(since=T0, until=T0 + timedelta(days=1, hours=3))
    assert [t["transaction_id"] for t in select_transactions(doc, f)] == [30]  # newest inside the range
    f = MartFilters(since=(T0 + timedelta(days=1, hours=3)).isoformat(), latest=False)
    assert [t["transaction_id"] for t in select_transactions(doc, f)] == [31, 32]


def test_model_version_and_box_filters():
    doc = make_doc(2, boxes_per_tx=3, model_version="7")
    assert select_transactions(doc, MartFilters(model_version="8")) == []
    tx = select_transactions(doc, MartFilters(model_version="7"))[0]
    assert [b["score"] for b in select_boxes(tx, MartFilters(min_score=0.5))] == [0.5, 0.7]
    only = select_boxes(tx, MartFilters(classes=(CLASSES[2],)))
    assert only and {b["class_name"] for b in only} == {CLASSES[2]}


def test_dates_parse_to_naive_utc_and_bad_input_is_one_line():
    assert to_utc_naive("2024-03-01") == datetime(2024, 3, 1)
    assert to_utc_naive("2024-03-01T10:00:00+02:00") == datetime(2024, 3, 1, 8)
    assert to_utc_naive("2024-03-01T10:00:00Z") == datetime(2024, 3, 1, 10)
    with pytest.raises(InputError, match="--since"):
        MartFilters(since="yesterday")
    with pytest.raises(InputError, match="not before"):
        MartFilters(since="2024-02-01", until="2024-01-01")
    with pytest.raises(InputError, match="val-fraction"):
        MartFilters(val_fraction=1.0)


def test_warehouse_query_prefilters_on_the_transaction():
    assert warehouse_query(MartFilters()) == {}
    q = warehouse_query(MartFilters(since="2024-01-01", model_version="3"))
    assert q == {"transactions": {"$elemMatch": {"time": {"$gte": datetime(2024, 1, 1)}, "model_version": "3"}}}


def test_coco_fields_ids_and_boxes():
    docs = [make_doc(i) for i in range(1, 4)]
    b = _build(docs)
    coco = b.coco
    assert [c["id"] for c in coco["categories"]] == [1, 2, 3, 4, 5]
    assert [c["name"] for c in coco["categories"]] == list(CLASSES)
    im = coco["images"][0]
    assert im["id"] == 10 and im["file_name"] == f"1_{docs[0]['sha256'][:12]}.png"
    assert (im["width"], im["height"]) == (64, 48) and im["date_captured"] == "2024-03-01 09:00:00"
    assert im["sha256"] == docs[0]["sha256"] and im["cxr_image_id"] == 1 and im["split"] in ("train", "val")
    ann = coco["annotations"][0]
    src = docs[0]["transactions"][0]["pred_bbox"][0]
    assert ann["id"] == src["pred_bbox_id"] and ann["image_id"] == 10
    assert ann["category_id"] == src["class_id"] + 1
    assert ann["bbox"] == [2.0, 3.0, 20.5, 15.25] and ann["area"] == pytest.approx(20.5 * 15.25) and ann["iscrowd"] == 0
    assert len(coco["annotations"]) == 6 and [f.key for f in b.files] == [rendition_key(d["sha256"]) for d in docs]
    json.dumps(coco)  # serialisable as is


def test_all_transactions_share_one_file_per_image():
    docs = [make_doc(1, n_tx=2), make_doc(2, n_tx=2)]
    b = _build(docs, latest=False)
    assert len(b.coco["images"]) == 4 and len(b.files) == 2
    assert len({im["split"] for im in b.coco["images"] if im["cxr_image_id"] == 1}) == 1


def test_class_filter_restricts_categories_and_unknown_class_is_input_error():
    docs = [make_doc(i, boxes_per_tx=3) for i in range(10)]
    b = _build(docs, classes=("ILD", "Cardiomegaly"))
    assert [c["name"] for c in b.coco["categories"]] == ["Cardiomegaly", "ILD"]
    assert {a["category_id"] for a in b.coco["annotations"]} <= {2, 3}
    with pytest.raises(InputError, match="unknown class 'Fracture'"):
        _build(docs, classes=("Fracture",))


def test_skip_empty_drops_transactions_without_boxes():
    docs = [make_doc(1, boxes_per_tx=0), make_doc(2)]
    assert len(_build(docs).coco["images"]) == 2
    assert [im["cxr_image_id"] for im in _build(docs, include_empty=False).coco["images"]] == [2]


def test_boxes_are_clipped_and_empty_ones_dropped():
    assert coco_bbox([-5, -5, 10, 10], 20, 20) == [0.0, 0.0, 10.0, 10.0]
    assert coco_bbox([15, 15, 30, 40], 20, 20) == [15.0, 15.0, 5.0, 5.0]
    assert coco_bbox([25, 0, 30, 10], 20, 20) is None
    doc = make_doc(1)
    doc["transactions"][0]["pred_bbox"][0]["box"] = [100, 100, 120, 120]  # outside 64x48
    b = _build([doc])
    assert b.dropped_boxes == 1 and len(b.coco["annotations"]) == 1


def test_split_is_deterministic_by_image_and_near_the_fraction():
    shas = [make_doc(i)["sha256"] for i in range(2000)]
    first = [split_of(s, 0.2) for s in shas]
    assert first == [split_of(s, 0.2) for s in shas]
    assert 0.16 < first.count("val") / len(first) < 0.24
    assert all(split_of(s, 0.0) == "train" for s in shas[:50])
    # a larger fraction only moves images train -> val, never back
    larger = [split_of(s, 0.3) for s in shas]
    assert not any(a == "val" and b == "train" for a, b in zip(first, larger)) and larger.count("val") > first.count("val")


def test_subset_and_counts_add_up():
    docs = [make_doc(i, boxes_per_tx=3) for i in range(40)]
    coco = _build(docs, val_fraction=0.3).coco
    tr, va = subset(coco, "train"), subset(coco, "val")
    assert len(tr["images"]) + len(va["images"]) == len(coco["images"]) and va["images"]
    assert len(tr["annotations"]) + len(va["annotations"]) == len(coco["annotations"])
    counts = class_counts(coco)
    assert sum(c["total"] for c in counts.values()) == len(coco["annotations"])
    assert sum(c["val"] for c in counts.values()) == len(va["annotations"])


def test_class_table_checks_names_against_the_model():
    docs = [make_doc(1)]
    assert class_table(docs) == {1: CLASSES[1], 2: CLASSES[2]}
    assert class_table(docs, CLASSES) == dict(enumerate(CLASSES))
    docs[0]["transactions"][0]["pred_bbox"][0]["class_name"] = "Other"
    with pytest.raises(IntegrityError, match="class_id 1 = 'Other'"):
        class_table(docs, CLASSES)
    assert categories({0: "A", 3: "B"})[1] == {"id": 4, "name": "B", "supercategory": "abnormality", "class_id": 3}


def test_repeated_transaction_ids_are_an_integrity_error():
    with pytest.raises(IntegrityError, match="transaction_id 10"):
        _build([make_doc(1), make_doc(1)])


def test_dataset_card_names_counts_filters_watermark_and_dates():
    docs = [make_doc(i, day=i) for i in range(1, 6)]
    b = _build(docs, min_score=0.4, classes=("Cardiomegaly", "ILD", "Infiltration"))
    card = dataset_card(b.coco, source={"warehouse": "mongodb://wh:27017", "database": "cxr", "watermark": 52, "lake": "s3://l/"})
    assert "watermark (highest transaction_id loaded): 52" in card
    assert "| min_score | 0.4 |" in card and "| classes | Cardiomegaly, ILD, Infiltration |" in card
    assert "2024-03-02 09:00:00 to 2024-03-06 08:00:00" in card
    assert "Created: 2024-05-01T12:00:00+00:00" in card and "not for clinical use" in card
    counts = class_counts(b.coco)
    for name, row in counts.items():
        assert f"| {name} | {row['train']} | {row['val']} | {row['total']} |" in card


def test_tunnel_url_points_at_the_local_end_with_direct_connection():
    url = "mongodb://u:p%40ss@docdb.example:27017/?tls=true&tlsCAFile=/ca.pem&replicaSet=rs0&retryWrites=false"
    assert warehouse_address(url) == ("docdb.example", 27017)
    out = tunneled_url(url, 40001)
    assert out.startswith("mongodb://u:p%40ss@127.0.0.1:40001/?")
    assert "directConnection=true" in out and "replicaSet" not in out and "tlsCAFile=%2Fca.pem" in out
    assert warehouse_address("mongodb://h") == ("h", 27017)
    for bad in ("embedded", "mongodb+srv://c.example/", "mongodb://a:1,b:2/"):
        with pytest.raises(ConfigError, match="CXR_WAREHOUSE_URL"):
            warehouse_address(bad)
