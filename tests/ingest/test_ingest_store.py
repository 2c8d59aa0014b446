"""The store path: content-addressed objects, one DB transaction, dedupe by sha256, plain-data names."""

from __future__ import annotations

import pytest
from ingest_factory import count_rows, gradient, lake_keys, make_dicom, png_bytes
from sqlalchemy import inspect, select

from cxr.ingest.decode import decode_upload
from cxr.ingest.pipeline import store_prediction
from cxr.stores.schema import image, pred_bounding_box, transaction


def _store(engine, lake, upload, predictor, *, run_id="r1", name=None, score_thr=0.5, nms_thr=0.5, **kw):
    det = predictor.postprocess(predictor.infer(upload.array), score_thr=score_thr, nms_thr=nms_thr)
    return store_prediction(engine, lake, upload, det, score_thr=score_thr, nms_thr=nms_thr,
                            model_version=predictor.model_version, run_id=run_id, original_name=name, **kw), det


def test_store_writes_objects_and_rows(stores, settings, fake_predictor):
    engine, lake = stores
    up = decode_upload("chest.png", png_bytes(gradient()), settings)
    res, det = _store(engine, lake, up, fake_predictor)
    sha = up.sha256
    assert res.created_image and res.sha256 == sha and res.n_boxes == len(det) == 2
    assert lake_keys(lake) == [f"images/{sha[:2]}/{sha}.png", f"renditions/{sha[:2]}/{sha}.png"]
    assert lake.get(res.image_key) == up.stored_bytes and lake.get(res.rendition_key) == up.rendition_png
    with engine.connect() as conn:
        img = conn.execute(select(image)).mappings().one()
        txn = conn.execute(select(transaction)).mappings().one()
        boxes = conn.execute(select(pred_bounding_box).order_by(pred_bounding_box.c.pred_bbox_id)).mappings().all()
    assert (img["bucket"], img["folder"], img["image_file"]) == (lake.bucket, f"images/{sha[:2]}", f"{sha}.png")
    assert (img["width"], img["height"], img["source_format"], img["original_name"]) == (96, 128, "png", "chest.png")
    assert txn["image_id"] == img["image_id"] == res.image_id and txn["transaction_id"] == res.transaction_id
    assert (txn["cs_thr"], txn["nms_thr"], txn["model_version"], txn["run_id"]) == (0.5, 0.5, "test-0", "r1")
    assert txn["time"].tzinfo is None
    recs = det.records()
    assert [(b["pred_class"], b["class_id"]) for b in boxes] == [(r["class_name"], r["class_id"]) for r in recs]
    assert [b["pred_cs"] for b in boxes] == pytest.approx([r["score"] for r in recs])
    assert boxes[0]["x_max"] == pytest.approx(recs[0]["x_max"])


def test_same_bytes_twice_is_one_image_two_transactions(stores, settings, fake_predictor):
    engine, lake = stores
    data = make_dicom()
    a, _ = _store(engine, lake, decode_upload("a.dcm", data, settings), fake_predictor)
    b, _ = _store(engine, lake, decode_upload("copy.dcm", data, settings), fake_predictor, score_thr=0.7)
    assert a.created_image and not b.created_image
    assert a.image_id == b.image_id and a.transaction_id != b.transaction_id
    assert count_rows(engine) == {"image": 1, "transaction": 2, "pred_bounding_box": 2 + 1}
    assert len(lake_keys(lake)) == 2


def test_resume_does_not_duplicate_a_run(stores, settings, fake_predictor):
    engine, lake = stores
    up = decode_upload("a.png", png_bytes(gradient()), settings)
    a, _ = _store(engine, lake, up, fake_predictor, run_id="batch-7", resume=True)
    b, _ = _store(engine, lake, up, fake_predictor, run_id="batch-7", resume=True)
    assert a.transaction_id == b.transaction_id and not b.created_transaction
    assert count_rows(engine)["transaction"] == 1


def test_injection_file_name_is_plain_data(stores, settings, fake_predictor):
    engine, lake = stores
    name = "x'); DROP TABLE image;--.png"
    up = decode_upload(name, png_bytes(gradient()), settings)
    _store(engine, lake, up, fake_predictor, name=name)
    assert {"image", "transaction", "pred_bounding_box"} <= set(inspect(engine).get_table_names())
    with engine.connect() as conn:
        assert conn.execute(select(image.c.original_name)).scalar_one() == name


def test_no_findings_is_a_transaction_without_boxes(stores, settings, fake_predictor):
    engine, lake = stores
    up = decode_upload("a.png", png_bytes(gradient()), settings)
    res, det = _store(engine, lake, up, fake_predictor, score_thr=0.99)
    assert len(det) == 0 and res.n_boxes == 0
    assert count_rows(engine) == {"image": 1, "transaction": 1, "pred_bounding_box": 0}


@pytest.mark.unit
def test_batch_ingest_of_a_directory(tmp_path, settings, sqlite_engine, local_lake, fake_predictor):
    from cxr.ingest.pipeline import ingest_files
    from cxr.model.phantoms import generate_phantom, write_dicom, write_png

    d = tmp_path / "in"
    for i in range(3):
        write_png(generate_phantom(i, size=64), d / f"p{i}.png")
    write_dicom(generate_phantom(9, size=64), d / "sub" / "p9.dcm")
    (d / "labels.json").write_text("{}")  # not an image extension: not picked up from a directory
    (d / ".hidden.png").write_bytes(b"junk")
    (d / "bad.png").write_bytes(b"not a png")
    summary = ingest_files([d], settings, predictor=fake_predictor, engine=sqlite_engine, lake=local_lake,
                           progress=False)
    assert len(summary.stored) == 4 and [r.path.endswith("bad.png") for r in summary.rejected] == [True]
    assert summary.as_dict()["n_new_images"] == 4 and not summary.ok
    assert count_rows(sqlite_engine)["image"] == 4
    again = ingest_files([d / "p0.png"], settings, predictor=fake_predictor, engine=sqlite_engine, lake=local_lake,
                         run_id=summary.run_id, progress=False)
    assert again.stored[0]["created_transaction"] is False  # resumed run: no duplicate
    assert count_rows(sqlite_engine)["transaction"] == 4
