"""Benchmark: our backup layout (year/month, sorted by image_id) vs the seed's partition-by-image_id.

Generates N images x T transactions x B boxes straight into a SQLite DB (SQLAlchemy Core, no
ingest code), extracts once with the backup job's Spark JDBC extract, then writes the same rows
in both layouts with the job's own writer and measures: files written, write time, and the time
to look up one image's rows with the job's reader (pyarrow, `cxr.stores.backup_reader.read_run`).
For the seed's layout it also times the best case: opening that image's directory directly.

    .venv/bin/python benchmarks/bench_backup.py --images 100000        # the issue's scale
    .venv/bin/python benchmarks/bench_backup.py --images 10000 --keep  # smaller, keep the files
    .venv/bin/python benchmarks/bench_backup.py --images 100000 --layouts month  # ours only

Prints a JSON summary (and the ratios) on stdout.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
from sqlalchemy import insert


def generate(engine, n_images: int, n_tx: int, n_boxes: int, seed: int = 0) -> dict:  # noqa: ANN001
    """Insert the rows in chunks; transaction times spread over 24 months (2023-2024)."""
    from cxr.stores.schema import image, pred_bounding_box, transaction

    rng = random.Random(seed)
    start = datetime(2023, 1, 1)
    span = (datetime(2025, 1, 1) - start).total_seconds()
    tid = bid = 0
    chunk = 5000
    t0 = time.perf_counter()
    for lo in range(1, n_images + 1, chunk):
        imgs, txs, boxes = [], [], []
        for iid in range(lo, min(lo + chunk, n_images + 1)):
            sha = f"{iid:064x}"
            imgs.append({"image_id": iid, "bucket": "lake", "folder": f"images/{sha[:2]}", "image_file": f"{sha}.png",
                         "sha256": sha, "width": 1024, "height": 1024, "source_format": "png", "original_name": None,
                         "created_at": start})
            for _ in range(n_tx):
                tid += 1
                txs.append({"transaction_id": tid, "image_id": iid,
                            "time": start + timedelta(seconds=rng.random() * span), "cs_thr": 0.5, "nms_thr": 0.5,
                            "model_version": "cxr-demo/1", "run_id": "bench"})
                for k in range(n_boxes):
                    bid += 1
                    x, y = rng.random() * 800, rng.random() * 800
                    boxes.append({"pred_bbox_id": bid, "transaction_id": tid, "pred_class": "Cardiomegaly",
                                  "class_id": k % 5, "pred_cs": rng.random(), "x_min": x, "y_min": y,
                                  "x_max": x + 100, "y_max": y + 100})
        with engine.begin() as conn:
            conn.execute(insert(image), imgs)
            conn.execute(insert(transaction), txs)
            if boxes:
                conn.execute(insert(pred_bounding_box), boxes)
    return {"images": n_images, "transactions": tid, "boxes": bid, "generate_s": round(time.perf_counter() - t0, 1)}


def count_files(root: Path) -> int:
    return sum(1 for _ in root.rglob("*.parquet"))


def lookup_times(fn, ids) -> float:  # noqa: ANN001
    """Median seconds of fn(image_id) over ids (after one warm-up call)."""
    fn(ids[0])
    samples = []
    for i in ids:
        t0 = time.perf_counter()
        n = fn(i)
        samples.append(time.perf_counter() - t0)
        assert n > 0, f"image {i}: no rows found"
    return statistics.median(samples)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=100_000)
    p.add_argument("--transactions", type=int, default=3, help="per image")
    p.add_argument("--boxes", type=int, default=3, help="per transaction")
    p.add_argument("--master", default="local[2]")
    p.add_argument("--lookups", type=int, default=20)
    p.add_argument("--workdir", type=Path, default=None)
    p.add_argument("--keep", action="store_true", help="keep the work directory")
    p.add_argument("--layouts", default="month,image_id", help="comma-separated; default both (ours, the seed's)")
    a = p.parse_args(argv)

    import pyarrow.dataset as ds

    from cxr.backup.job import extract, plan_ids, spark_session, write_parquet, jdbc_reader
    from cxr.backup.manifest import Manifest, run_prefix
    from cxr.stores.backup_reader import read_run
    from cxr.config import load_settings
    from cxr.stores import db
    from cxr.stores.lake import LocalLake

    work = a.workdir or Path(tempfile.mkdtemp(prefix="cxr-bench-backup-"))
    work.mkdir(parents=True, exist_ok=True)
    out: dict = {"scale": {}, "db": "sqlite (generation speed)", "master": a.master}
    try:
        engine = db.make_engine(f"sqlite:///{work / 'bench.db'}")
        db.upgrade(engine)
        out["scale"] = generate(engine, a.images, a.transactions, a.boxes)
        print("generated", out["scale"], file=sys.stderr)

        settings = load_settings(data_dir=work / "var")
        t0 = time.perf_counter()
        spark = spark_session(settings, master=a.master)
        spark.sparkContext.setLogLevel("ERROR")
        out["spark_start_s"] = round(time.perf_counter() - t0, 1)
        tids, iids = plan_ids(engine, datetime(2100, 1, 1), np.array([], dtype=np.int64))
        t0 = time.perf_counter()
        df = extract(spark, jdbc_reader(spark, str(engine.url)), tids, iids, 4).persist()
        rows = df.count()
        out["extract_s"] = round(time.perf_counter() - t0, 1)
        out["rows"] = rows
        print("extracted", rows, "rows", file=sys.stderr)

        lake = LocalLake(work / "lake")
        rng = random.Random(1)
        probe = [rng.randint(1, a.images) for _ in range(a.lookups)]
        for layout in a.layouts.split(","):
            prefix = run_prefix(layout, "bench")
            target = lake.root / prefix
            t0 = time.perf_counter()
            write_parquet(df, layout, str(target))
            write_s = time.perf_counter() - t0
            files = sorted(target.rglob("*.parquet"))
            manifest = Manifest(run_id="bench", layout=layout, before="", created_at="", source="sqlite", summary={},
                                files=[{"key": f.relative_to(lake.root).as_posix(), "size": f.stat().st_size}
                                       for f in files])
            res = {"files": len(files), "write_s": round(write_s, 2),
                   "bytes": sum(f.stat().st_size for f in files),
                   "lookup_read_run_ms": round(1000 * lookup_times(
                       lambda i, m=manifest: read_run(lake, m, image_ids=[i]).num_rows, probe), 2)}
            if layout == "image_id":  # the seed's best case: open that image's directory directly
                res["lookup_direct_dir_ms"] = round(1000 * lookup_times(
                    lambda i, t=target: ds.dataset(str(t / f"image_id={i}"), format="parquet").count_rows(), probe), 2)
            out[layout] = res
            print(layout, res, file=sys.stderr)
        df.unpersist()
        ours, seed = out.get("month"), out.get("image_id")
        out["ratios"] = {} if not (ours and seed) else {
            "fewer_files_x": round(seed["files"] / ours["files"], 1),
            "faster_write_x": round(seed["write_s"] / ours["write_s"], 1),
            "lookup_ours_vs_seed_read_run": round(ours["lookup_read_run_ms"] / seed["lookup_read_run_ms"], 2),
            "lookup_ours_vs_seed_direct_dir": round(ours["lookup_read_run_ms"] / seed["lookup_direct_dir_ms"], 2),
        }
    finally:
        if not a.keep:
            shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main()
