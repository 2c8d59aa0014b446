"""16 parallel ingesters x 50 images against MariaDB and the S3 endpoint: 0 lost, 0 duplicated."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from ingest_factory import FakePredictor, count_rows, png_bytes
from sqlalchemy import func, select

from cxr.ingest.decode import decode_upload
from cxr.ingest.pipeline import store_prediction
from cxr.stores.db import make_engine
from cxr.stores.schema import image, pred_bounding_box, transaction

WORKERS, PER_WORKER, SHARED = 16, 50, 25  # each worker: 25 images of its own + the same 25 shared ones


@pytest.mark.integration
def test_parallel_ingesters_lose_and_duplicate_nothing(mariadb_engine, s3_lake, settings):
    rng = np.random.default_rng(0)

    def upload(tag: str):
        px = rng.integers(0, 256, (24, 24), dtype=np.uint8)
        return decode_upload(f"{tag}.png", png_bytes(px), settings)

    shared = [upload(f"shared-{i}") for i in range(SHARED)]
    own = [[upload(f"w{w}-{i}") for i in range(PER_WORKER - SHARED)] for w in range(WORKERS)]
    predictor = FakePredictor()
    detections = {u.sha256: predictor.predict(u.array) for u in shared + sum(own, [])}
    engine = make_engine(mariadb_engine.url.render_as_string(hide_password=False), pool_size=WORKERS)
    start = threading.Barrier(WORKERS)

    def work(w: int):
        todo = own[w] + shared
        order = np.random.default_rng(w).permutation(len(todo))  # shared images race in different orders
        start.wait()
        out = []
        for i in order:
            u = todo[i]
            out.append((u.sha256, store_prediction(engine, s3_lake, u, detections[u.sha256], score_thr=0.5,
                                                   nms_thr=0.5, model_version="m", run_id=f"worker-{w}")))
        return out

    with ThreadPoolExecutor(WORKERS) as pool:
        results = [r for rs in pool.map(work, range(WORKERS)) for r in rs]
    engine.dispose()

    n_images = WORKERS * (PER_WORKER - SHARED) + SHARED
    assert len(results) == WORKERS * PER_WORKER
    txn_ids = [r.transaction_id for _, r in results]
    assert len(set(txn_ids)) == len(txn_ids)  # unique ids
    assert sum(r.created_image for _, r in results) == n_images  # each image created exactly once
    by_sha = {}
    for sha, r in results:
        by_sha.setdefault(sha, set()).add(r.image_id)
    assert all(len(ids) == 1 for ids in by_sha.values()) and len(by_sha) == n_images
    expected_boxes = sum(len(detections[sha]) for sha, _ in results)
    assert count_rows(mariadb_engine) == {"image": n_images, "transaction": len(results),
                                          "pred_bounding_box": expected_boxes}
    with mariadb_engine.connect() as conn:
        db_txns = set(conn.execute(select(transaction.c.transaction_id)).scalars())
        per_image = dict(conn.execute(select(transaction.c.image_id, func.count()).group_by(transaction.c.image_id)).all())
        orphan_boxes = conn.execute(select(func.count()).select_from(pred_bounding_box).where(
            pred_bounding_box.c.transaction_id.not_in(select(transaction.c.transaction_id)))).scalar_one()
        keys = {f"{f}/{n}" for f, n in conn.execute(select(image.c.folder, image.c.image_file))}
    assert db_txns == set(txn_ids) and orphan_boxes == 0
    shared_ids = {next(iter(by_sha[u.sha256])) for u in shared}
    assert all(per_image[i] == WORKERS for i in shared_ids)  # every worker's transaction for a shared image
    lake_keys = {o.key for o in s3_lake.list("images/")}
    assert keys == lake_keys and len({o.key for o in s3_lake.list("renditions/")}) == n_images
