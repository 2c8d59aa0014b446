"""Benchmark the ingest store path against the seed's method, with 100 vs 10,000 images in the lake.

For each lake size N (default 100 and 10,000) the benchmark makes a fresh bucket on the local S3
endpoint and a fresh, migrated MariaDB database (both from `cxr services up`), pre-fills them with
N images (objects under ``images/`` and their ``image``/``transaction`` rows). Then it stores the
same precomputed uploads + detections into every size, round by round (so a change of load on
the shared machine hits all sizes and both methods alike), with:

* **ours**: :func:`cxr.ingest.pipeline.store_prediction` (content-addressed keys, two idempotent
  PUTs, one DB transaction with auto-increment ids);
* **seed**: the seed's method reimplemented: list every object in the bucket folder on each
  upload to pick the next file name, PUT the image, then insert the rows with ids from
  ``SELECT MAX(id)+1`` (one per row: image, transaction, each box).

Decoding and inference are excluded (the same for both). Per-image medians are reported, with
the two goals: ours(10k) / ours(100) <= 1.2 and seed(10k) / ours(10k) >= 20. Bucket and
database are removed afterwards.

    .venv/bin/cxr services up
    .venv/bin/python benchmarks/bench_ingest.py        # 100 and 10000; 40 images ours, 8 seed, per size
    .venv/bin/python benchmarks/bench_ingest.py --sizes 100 1000 --samples 10 --seed-every 2 --json out.json
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
from sqlalchemy import func, insert, select, text
from sqlalchemy.engine import make_url

from cxr.devtools import services as svc
from cxr.config import load_settings
from cxr.ingest.decode import decode_upload
from cxr.ingest.pipeline import store_prediction
from cxr.model.phantoms import generate_phantom, png_bytes
from cxr.model.postprocess import Detections
from cxr.stores import db
from cxr.stores.lake import S3Lake
from cxr.stores.schema import image, pred_bounding_box, transaction

SEED_FOLDER = "images/"


def seed_store(engine, lake: S3Lake, data: bytes, records: list[dict], *, width: int, height: int,  # noqa: ANN001
               score_thr: float, nms_thr: float) -> int:
    """The seed's ingest, reimplemented: list the folder, PUT, then MAX(id)+1 inserts."""
    n = 0
    for page in lake.client.get_paginator("list_objects_v2").paginate(Bucket=lake.bucket, Prefix=SEED_FOLDER):
        n += len(page.get("Contents", []))  # the seed counted the folder to name the next file
    name = f"{n + 1}.png"
    lake.client.put_object(Bucket=lake.bucket, Key=SEED_FOLDER + name, Body=data)
    with engine.begin() as conn:
        image_id = conn.execute(select(func.coalesce(func.max(image.c.image_id), 0) + 1)).scalar_one()
        conn.execute(insert(image).values(image_id=image_id, bucket=lake.bucket, folder=SEED_FOLDER.rstrip("/"),
                                          image_file=name, sha256=uuid.uuid4().hex * 2, width=width, height=height,
                                          source_format="png", original_name=name, created_at=datetime.utcnow()))
        txn_id = conn.execute(select(func.coalesce(func.max(transaction.c.transaction_id), 0) + 1)).scalar_one()
        conn.execute(insert(transaction).values(transaction_id=txn_id, image_id=image_id, time=datetime.utcnow(),
                                                cs_thr=score_thr, nms_thr=nms_thr, model_version="seed", run_id="seed"))
        for r in records:
            box_id = conn.execute(select(func.coalesce(func.max(pred_bounding_box.c.pred_bbox_id), 0) + 1)).scalar_one()
            conn.execute(insert(pred_bounding_box).values(
                pred_bbox_id=box_id, transaction_id=txn_id, pred_class=r["class_name"], class_id=r["class_id"],
                pred_cs=r["score"], x_min=r["x_min"], y_min=r["y_min"], x_max=r["x_max"], y_max=r["y_max"]))
    return txn_id


def prefill(engine, lake: S3Lake, n: int, workers: int = 16) -> None:  # noqa: ANN001
    """N existing images: tiny objects under images/<sha[:2]>/<sha>.png and their rows."""
    rng = np.random.default_rng(n)
    shas = [f"{int(v):064x}" for v in rng.integers(0, 2**62, n)]
    keys = [f"images/{s[:2]}/{s}.png" for s in shas]
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(lambda k: lake.client.put_object(Bucket=lake.bucket, Key=k, Body=b"x" * 256), keys))
    t0 = datetime(2024, 1, 1)
    with engine.begin() as conn:
        for i in range(0, n, 1000):
            chunk = range(i, min(n, i + 1000))
            conn.execute(insert(image), [{"bucket": lake.bucket, "folder": f"images/{shas[j][:2]}",
                                          "image_file": f"{shas[j]}.png", "sha256": shas[j], "width": 256,
                                          "height": 256, "source_format": "png", "original_name": None,
                                          "created_at": t0} for j in chunk])
        ids = list(conn.execute(select(image.c.image_id)).scalars())
        for i in range(0, len(ids), 1000):
            conn.execute(insert(transaction), [{"image_id": k, "time": t0 + timedelta(seconds=k), "cs_thr": 0.5,
                                                "nms_thr": 0.5, "model_version": "1", "run_id": "prefill"}
                                               for k in ids[i:i + 1000]])


def uploads(count: int, size: int, settings):  # noqa: ANN001, ANN201
    out = []
    for seed in range(count):
        ph = generate_phantom(1000 + seed, size=size)
        up = decode_upload(f"bench-{seed}.png", png_bytes(ph), settings)
        det = Detections(ph.boxes, np.full(len(ph.boxes), 0.9, np.float32), ph.labels,
                         [ph.class_names[i] for i in ph.labels])
        out.append((up, det))
    return out


class Stores:
    """A fresh MariaDB database and S3 bucket, pre-filled with ``n`` images; ``close()`` removes them."""

    def __init__(self, env: dict, n: int):
        url = make_url(env["CXR_DB_URL"])
        self.n = n
        self.name = f"cxr_bench_{uuid.uuid4().hex[:10]}"
        self.admin = db.make_engine(url.render_as_string(hide_password=False), pool_size=1)
        with self.admin.begin() as conn:
            conn.execute(text(f"CREATE DATABASE `{self.name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"))
        self.engine = db.make_engine(url.set(database=self.name).render_as_string(hide_password=False))
        self.client = svc.s3_client(env["CXR_S3_ENDPOINT_URL"])
        self.bucket = f"cxr-bench-{uuid.uuid4().hex[:10]}"
        self.client.create_bucket(Bucket=self.bucket)
        self.lake = S3Lake(self.bucket, endpoint_url=env["CXR_S3_ENDPOINT_URL"], region=env.get("CXR_S3_REGION"))
        db.upgrade(self.engine)
        t0 = time.perf_counter()
        prefill(self.engine, self.lake, n)
        self.prefill_s = time.perf_counter() - t0

    def close(self) -> None:
        self.engine.dispose()
        with self.admin.begin() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS `{self.name}`"))
        self.admin.dispose()
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket):
            objs = [{"Key": o["Key"]} for o in page.get("Contents", [])]
            if objs:
                self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": objs})
        self.client.delete_bucket(Bucket=self.bucket)


def measure(stores: list[Stores], samples: list, seed_every: int) -> list[dict]:
    """Interleave every size and both methods round by round, so load changes hit all alike."""
    ours = {s.n: [] for s in stores}
    seed = {s.n: [] for s in stores}
    for i, (up, det) in enumerate(samples):
        for st in stores:
            t = time.perf_counter()
            store_prediction(st.engine, st.lake, up, det, score_thr=0.5, nms_thr=0.5, model_version="bench",
                             run_id="bench")
            ours[st.n].append(time.perf_counter() - t)
            if i % seed_every == 0:
                t = time.perf_counter()
                seed_store(st.engine, st.lake, up.stored_bytes, det.records(), width=up.width, height=up.height,
                           score_thr=0.5, nms_thr=0.5)
                seed[st.n].append(time.perf_counter() - t)

    def ms(values: list[float], q: float) -> float:
        return round(1000 * sorted(values)[max(0, math.ceil(q * len(values)) - 1)], 2)

    return [{"objects_before": st.n, "prefill_s": round(st.prefill_s, 1),
             "ours_samples": len(ours[st.n]), "seed_samples": len(seed[st.n]),
             "ours_median_ms": round(1000 * statistics.median(ours[st.n]), 2), "ours_p90_ms": ms(ours[st.n], 0.9),
             "seed_median_ms": round(1000 * statistics.median(seed[st.n]), 2), "seed_p90_ms": ms(seed[st.n], 0.9)}
            for st in stores]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[100, 10_000], help="images already in the lake")
    ap.add_argument("--samples", type=int, default=40, help="images stored with our method per lake size")
    ap.add_argument("--seed-every", type=int, default=5, help="also store with the seed's method every Nth image "
                    "(it takes seconds per image at 10k)")
    ap.add_argument("--image-size", type=int, default=512, help="phantom side in pixels")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args()
    env = svc.running_env()  # exports the endpoint's test credentials
    settings = load_settings(data_dir=Path(tempfile.mkdtemp(prefix="bench-ingest-")))
    samples = uploads(args.samples, args.image_size, settings)
    stores = []
    try:
        for n in args.sizes:
            stores.append(Stores(env, n))
        rows = measure(stores, samples, args.seed_every)
    finally:
        for st in stores:
            st.close()
    small, large = rows[0], rows[-1]
    result = {
        "rows": rows,
        "ours_ratio_large_vs_small": round(large["ours_median_ms"] / small["ours_median_ms"], 3),
        "speedup_vs_seed_at_large": round(large["seed_median_ms"] / large["ours_median_ms"], 1),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
    }
    print("| objects in lake | ours median (p90) ms | seed median (p90) ms | seed / ours |")
    print("|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['objects_before']:,} | {r['ours_median_ms']} ({r['ours_p90_ms']}) | "
              f"{r['seed_median_ms']} ({r['seed_p90_ms']}) | {r['seed_median_ms'] / r['ours_median_ms']:.1f}x |")
    print(f"ours {large['objects_before']:,} vs {small['objects_before']:,}: ratio {result['ours_ratio_large_vs_small']} "
          "(goal <= 1.2); seed / ours at the largest: "
          f"{result['speedup_vs_seed_at_large']}x (goal >= 20x)")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
