"""Benchmark the warehouse ETL against the seed's method, on N images x T transactions x B boxes.

Generates the history straight into a SQLite DB (SQLAlchemy Core, no ingest code), starts a
private SecantusDB server process (on disk, so other tests on the shared server do not disturb
it), then measures into fresh databases:

* **ours**: :func:`cxr.warehouse.etl.run_incremental` -- watermark, rows streamed with
  ``yield_per``, one ``bulk_write`` per batch (inserts of new documents, ``$push`` merges of new
  transactions into existing ones);
* **seed**: the seed's method reimplemented: read every image id already loaded, then per image
  either ``insert_one`` its new document or re-read it (``find_one``) and rewrite its
  transactions (``update_one`` ``$set``). No watermark: every run reads every row. It gets the same
  unique index and the same row->document transform, so only the load method differs.

Scenarios: a full load of the N images, then 1% new transactions (one each on N*T/100 existing
images) and a re-run. Goals: ours >= 20x the seed's documents/s on the full load; our re-run
costs <= 5% of our full load.

``--rtt-ms X`` adds X ms before every command sent to the server (a pymongo command listener
that sleeps), to emulate the network between the ETL host and DocumentDB, which loopback lacks;
the default 0 measures loopback as is.

    .venv/bin/python benchmarks/bench_warehouse.py                      # 10k x 3 x 3, loopback
    .venv/bin/python benchmarks/bench_warehouse.py --rtt-ms 0.5         # same, 0.5 ms per round trip
    .venv/bin/python benchmarks/bench_warehouse.py --images 1000 --json out.json

Prints a JSON summary on stdout.
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import insert

CLASSES = ("Aortic enlargement", "Cardiomegaly", "ILD", "Infiltration", "Nodule/Mass")


def generate(engine, images: list[int], n_tx: int, n_boxes: int, *, new_images: bool, start_tid: int,  # noqa: ANN001
             start_bid: int, t0: datetime) -> tuple[int, int]:
    """Insert ``n_tx`` transactions of ``n_boxes`` boxes for each image (and the images if new)."""
    from cxr.stores.schema import image, pred_bounding_box, transaction

    tid, bid, chunk = start_tid, start_bid, 2000
    for lo in range(0, len(images), chunk):
        ids = images[lo:lo + chunk]
        img, txs, boxes = [], [], []
        for i in ids:
            sha = f"{i * 2654435761 % 2**64:064x}"
            if new_images:
                img.append({"image_id": i, "bucket": "cxr-lake", "folder": f"images/{sha[:2]}", "image_file": f"{sha}.png",
                            "sha256": sha, "width": 2048, "height": 2048, "source_format": "png",
                            "original_name": None, "created_at": t0})
            for _ in range(n_tx):
                txs.append({"transaction_id": tid, "image_id": i, "time": t0 + timedelta(seconds=tid), "cs_thr": 0.5,
                            "nms_thr": 0.5, "model_version": "cxr-demo/1", "run_id": "bench"})
                for k in range(n_boxes):
                    boxes.append({"pred_bbox_id": bid, "transaction_id": tid, "pred_class": CLASSES[k % 5], "class_id": k % 5,
                                  "pred_cs": 0.5 + k / 10, "x_min": 100.0 + k, "y_min": 200.0, "x_max": 400.5, "y_max": 500.25})
                    bid += 1
                tid += 1
        with engine.begin() as conn:
            if img:
                conn.execute(insert(image), img)
            conn.execute(insert(transaction), txs)
            conn.execute(insert(pred_bounding_box), boxes)
    return tid, bid


def seed_load(engine, collection) -> int:  # noqa: ANN001
    """The seed's method (see the module docstring); returns the documents written."""
    from cxr.stores.queries import joined_rows
    from cxr.warehouse.documents import documents_from_rows, merge_documents

    loaded = {d["image_id"] for d in collection.find({}, {"_id": 0, "image_id": 1})}
    written = 0
    with engine.connect() as conn:
        rows = (r._mapping for r in conn.execution_options(yield_per=10_000).execute(joined_rows()))
        for doc in documents_from_rows(rows):
            if doc["image_id"] not in loaded:
                collection.insert_one(doc)
                loaded.add(doc["image_id"])
            else:
                old = collection.find_one({"image_id": doc["image_id"]})
                merged = merge_documents(old, doc)
                collection.update_one({"image_id": doc["image_id"]},
                                      {"$set": {"transactions": merged["transactions"], "updated_at": merged["updated_at"]}})
            written += 1
    return written


def _latency_listener(seconds: float):  # noqa: ANN202
    from pymongo import monitoring

    class Latency(monitoring.CommandListener):
        """pymongo command listener that sleeps before each command: an emulated network round trip."""

        def __init__(self) -> None:
            self.commands = 0

        def started(self, event) -> None:  # noqa: ANN001
            self.commands += 1
            if seconds:
                time.sleep(seconds)

        def succeeded(self, event) -> None:  # noqa: ANN001
            pass

        def failed(self, event) -> None:  # noqa: ANN001
            pass

    return Latency()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=10_000)
    ap.add_argument("--transactions", type=int, default=3)
    ap.add_argument("--boxes", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=1000)
    ap.add_argument("--new-fraction", type=float, default=0.01, help="new transactions, as a fraction of the loaded ones")
    ap.add_argument("--rtt-ms", type=float, default=0.0)
    ap.add_argument("--no-seed-rerun", dest="seed_rerun", action="store_false",
                    help="skip the seed's re-run (at 10k images it takes many minutes on a loaded machine)")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()

    from pymongo import MongoClient

    from cxr.config import load_settings
    from cxr.stores import db
    from cxr.warehouse import etl
    from cxr.warehouse.etl import ensure_indexes

    tmp = Path(tempfile.mkdtemp(prefix="cxr-bench-warehouse-"))
    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "secantus", "--host", "127.0.0.1", "--port", str(port),
                               "--storage-path", str(tmp / "warehouse"), "--log-level", "WARNING"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        listener = _latency_listener(args.rtt_ms / 1000)
        client = MongoClient(f"mongodb://127.0.0.1:{port}/?directConnection=true", event_listeners=[listener])
        for _ in range(100):
            try:
                client.admin.command("ping")
                break
            except Exception:  # noqa: BLE001 - starting
                time.sleep(0.2)
        engine = db.make_engine(f"sqlite:///{tmp / 'bench.db'}")
        db.upgrade(engine)
        t0 = datetime(2024, 1, 1)
        n, T = args.images, args.transactions
        g0 = time.perf_counter()
        tid, bid = generate(engine, list(range(1, n + 1)), T, args.boxes, new_images=True, start_tid=1, start_bid=1, t0=t0)
        gen_s = time.perf_counter() - g0
        settings = load_settings(data_dir=tmp / "var", warehouse_url="embedded")
        ours_db, seed_db = client["bench_ours"], client["bench_seed"]
        ensure_indexes(seed_db["images"])

        out: dict = {"images": n, "transactions_per_image": T, "boxes_per_transaction": args.boxes,
                     "batch_size": args.batch_size, "rtt_ms": args.rtt_ms, "generate_s": round(gen_s, 2)}
        c0, t = listener.commands, time.perf_counter()
        full = etl.run_incremental(settings, engine=engine, database=ours_db, batch_size=args.batch_size, progress=False)
        ours_full = time.perf_counter() - t
        out["ours_full"] = {"s": round(ours_full, 2), "docs": full.documents_written, "docs_per_s": round(n / ours_full, 1),
                            "commands": listener.commands - c0}
        c0, t = listener.commands, time.perf_counter()
        seed_n = seed_load(engine, seed_db["images"])
        seed_full = time.perf_counter() - t
        out["seed_full"] = {"s": round(seed_full, 2), "docs": seed_n, "docs_per_s": round(n / seed_full, 1),
                            "commands": listener.commands - c0}

        k = max(1, round(n * T * args.new_fraction))
        tid, bid = generate(engine, list(range(1, k + 1)), 1, args.boxes, new_images=False, start_tid=tid,
                            start_bid=bid, t0=t0 + timedelta(days=400))
        c0, t = listener.commands, time.perf_counter()
        inc = etl.run_incremental(settings, engine=engine, database=ours_db, batch_size=args.batch_size, progress=False)
        ours_inc = time.perf_counter() - t
        out["ours_rerun"] = {"s": round(ours_inc, 3), "new_transactions": k, "docs": inc.documents_written,
                             "commands": listener.commands - c0}
        if args.seed_rerun:
            c0, t = listener.commands, time.perf_counter()
            seed_docs = seed_load(engine, seed_db["images"])
            seed_inc = time.perf_counter() - t
            out["seed_rerun"] = {"s": round(seed_inc, 2), "docs": seed_docs, "commands": listener.commands - c0}
            out["ratio_rerun_time"] = round(seed_inc / ours_inc, 1)
            out["same_documents"] = (list(ours_db["images"].find({}, {"_id": 0}).sort("image_id", 1))
                                     == list(seed_db["images"].find({}, {"_id": 0}).sort("image_id", 1)))

        # The same share of new transactions arriving as new images (new uploads): inserts only.
        fresh = list(range(n + 1, n + 1 + max(1, k // T)))
        generate(engine, fresh, T, args.boxes, new_images=True, start_tid=tid, start_bid=bid,
                 t0=t0 + timedelta(days=401))
        c0, t = listener.commands, time.perf_counter()
        new_imgs = etl.run_incremental(settings, engine=engine, database=ours_db, batch_size=args.batch_size, progress=False)
        ours_new = time.perf_counter() - t
        out["ours_rerun_new_images"] = {"s": round(ours_new, 3), "new_transactions": len(fresh) * T,
                                        "docs": new_imgs.documents_written, "commands": listener.commands - c0}
        out["ratio_full_docs_per_s"] = round(seed_full / ours_full, 2)
        out["rerun_over_full"] = round(ours_inc / ours_full, 4)
        out["rerun_new_images_over_full"] = round(ours_new / ours_full, 4)
        out["goals"] = {"full >= 20x": out["ratio_full_docs_per_s"] >= 20, "rerun <= 5%": out["rerun_over_full"] <= 0.05,
                        "rerun (new images) <= 5%": out["rerun_new_images_over_full"] <= 0.05}
        engine.dispose()
        client.close()
    finally:
        server.terminate()
        server.wait(30)
        shutil.rmtree(tmp, ignore_errors=True)
    text = json.dumps(out, indent=1)
    print(text)
    if args.json:
        args.json.write_text(text)


if __name__ == "__main__":
    main()
