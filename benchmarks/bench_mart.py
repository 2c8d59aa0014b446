"""Benchmark the mart export: concurrent downloads vs one at a time (the seed's way).

Fills a fresh bucket on the local S3 endpoint (moto server of `cxr services up`) with N PNG
renditions of synthetic phantoms and a fresh warehouse database (SecantusDB of `cxr services up`)
with their N documents, then runs ``export_mart`` with ``--workers 1`` and with ``--workers W``
into empty folders and reports the ratio. Both use the same code, stores and data; only the
pool size differs. Bucket and database are removed afterwards.

``--rtt-ms X`` adds X ms before every S3 request (a botocore ``before-send`` hook on the
benchmark's client), to emulate the round trip to a remote S3 region that loopback lacks;
the default 0 measures loopback as is.

    .venv/bin/cxr services up
    .venv/bin/python benchmarks/bench_mart.py --images 2000 --workers 16
    .venv/bin/python benchmarks/bench_mart.py --images 2000 --workers 16 --rtt-ms 20
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from pathlib import Path

from cxr.devtools import services as svc
from cxr.stores.layout import rendition_key
from cxr.mart.export import export_mart
from cxr.model.classes import SEED_CLASSES
from cxr.model.phantoms import generate_phantom, png_bytes
from cxr.stores.lake import S3Lake
from cxr.stores.warehouse import connect


def documents(n: int, size: int, distinct: int) -> tuple[list[dict], dict[str, bytes]]:
    """N warehouse documents and their renditions (``distinct`` phantom images, reused)."""
    phantoms = [generate_phantom(seed, size=size) for seed in range(distinct)]
    pngs = [png_bytes(p) for p in phantoms]
    docs, objects = [], {}
    t0 = datetime(2024, 1, 1)
    for i in range(n):
        p = phantoms[i % distinct]
        sha = hashlib.sha256(f"bench-{i}".encode()).hexdigest()
        objects[rendition_key(sha)] = pngs[i % distinct]
        boxes = [{"pred_bbox_id": i * 100 + j, "class_id": int(lab), "class_name": SEED_CLASSES[int(lab)],
                  "score": 0.9, "box": [float(v) for v in box]} for j, (box, lab) in enumerate(zip(p.boxes, p.labels))]
        docs.append({"image_id": i + 1, "sha256": sha, "bucket": "bench", "folder": f"images/{sha[:2]}",
                     "image_file": f"{sha}.png", "width": p.width, "height": p.height,
                     "transactions": [{"transaction_id": i + 1, "time": t0 + timedelta(minutes=i), "cs_thr": 0.5,
                                       "nms_thr": 0.5, "model_version": "1", "run_id": "bench", "mode": "upload",
                                       "pred_bbox": boxes}],
                     "created_at": t0, "updated_at": t0})
    return docs, objects


def add_rtt(lake: S3Lake, rtt_ms: float) -> None:
    if rtt_ms > 0:
        lake.client.meta.events.register("before-send.s3.*", lambda **_: time.sleep(rtt_ms / 1000.0))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=2000)
    ap.add_argument("--workers", type=int, default=16)
    ap.add_argument("--size", type=int, default=256, help="phantom side in pixels")
    ap.add_argument("--distinct", type=int, default=50, help="distinct phantom images, reused under different keys")
    ap.add_argument("--rtt-ms", type=float, default=0.0, help="emulated round trip per S3 request (0: loopback as is)")
    ap.add_argument("--repeat", type=int, default=1, help="runs of each mode; the best is reported")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args()

    env = svc.running_env()  # exports the endpoint's test credentials
    endpoint = env["CXR_S3_ENDPOINT_URL"]
    bucket, dbname = f"cxr-bench-{uuid.uuid4().hex[:8]}", f"cxr_bench_{uuid.uuid4().hex[:8]}"
    s3 = svc.s3_client(endpoint)
    s3.create_bucket(Bucket=bucket)
    client = connect(env["CXR_WAREHOUSE_URL"])
    work = Path(tempfile.mkdtemp(prefix="bench-mart-"))
    try:
        t = time.perf_counter()
        docs, objects = documents(args.images, args.size, args.distinct)
        with ThreadPoolExecutor(8) as pool:  # setup only
            list(pool.map(lambda kv: s3.put_object(Bucket=bucket, Key=kv[0], Body=kv[1]), objects.items()))
        db = client[dbname]
        db["images"].insert_many(docs)
        mb = sum(map(len, objects.values())) / 1e6
        print(f"setup: {args.images} images ({mb:.1f} MB of PNG) in {time.perf_counter() - t:.1f}s")

        lake = S3Lake(bucket, endpoint_url=endpoint, region=env.get("CXR_S3_REGION"))
        add_rtt(lake, args.rtt_ms)
        times: dict[str, float] = {}
        for label, workers in (("sequential (workers=1)", 1), (f"concurrent (workers={args.workers})", args.workers)):
            best = float("inf")
            for r in range(args.repeat):
                out = work / f"w{workers}-{r}"
                t = time.perf_counter()
                res = export_mart(out, database=db, lake=lake, classes=SEED_CLASSES, workers=workers, progress=False)
                best = min(best, time.perf_counter() - t)
                assert res.downloaded == args.images and res.images == args.images, res
                shutil.rmtree(out)
            times[label] = best
            print(f"{label}: {best:.2f}s ({args.images / best:.0f} images/s)")
        seq, conc = times.values()
        ratio = seq / conc
        print(f"speed-up: {ratio:.2f}x (goal >= 4x){'' if ratio >= 4 else '  -- below goal'}")
        if args.json:
            args.json.write_text(json.dumps({"images": args.images, "workers": args.workers, "rtt_ms": args.rtt_ms,
                                             "size": args.size, "seconds": times, "speedup": ratio}, indent=2))
    finally:
        shutil.rmtree(work, ignore_errors=True)
        client.drop_database(dbname)
        client.close()
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
            if keys:
                s3.delete_objects(Bucket=bucket, Delete={"Objects": keys})
        s3.delete_bucket(Bucket=bucket)


if __name__ == "__main__":
    main()
