"""What the audit trail costs the ingest store step: store_prediction with its `upload` audit event
(the hash chain's lock, one SELECT, one INSERT, one UPDATE in the same DB transaction) against the same
store with the event left out, in the same run, rounds interleaved.

On SQLite (a file in a temp dir) and, when `cxr services up` runs, on MariaDB, with a local-directory
lake. Decoding and inference are excluded (done once, before timing). Prints per-image medians and
the ratio; the goal is at most 1.5x (a handful of small statements beside the image's own rows).

    .venv/bin/python benchmarks/bench_audit.py                 # 200 images per variant, SQLite and MariaDB
    .venv/bin/python benchmarks/bench_audit.py --images 50 --json out.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
from sqlalchemy import text

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "ingest"))

from ingest_factory import FakePredictor  # noqa: E402  (the benchmark's fixed detections)

from cxr.auth.audit import verify  # noqa: E402
from cxr.config import load_settings  # noqa: E402
from cxr.ingest import pipeline  # noqa: E402
from cxr.ingest.decode import decode_upload  # noqa: E402
from cxr.model.phantoms import generate_phantom, png_bytes  # noqa: E402
from cxr.stores.db import make_engine, upgrade  # noqa: E402
from cxr.stores.lake import LocalLake  # noqa: E402


def _uploads(n: int, settings) -> list:  # noqa: ANN001
    pred = FakePredictor()
    out = []
    for i in range(n):
        up = decode_upload(f"b{i}.png", png_bytes(generate_phantom(90_000 + i, 128)), settings)
        out.append((up, pred.postprocess(pred.infer(up.array))))
    return out


def _time(engine, lake, items, audited: bool) -> list[float]:  # noqa: ANN001
    real = pipeline.append
    if not audited:
        pipeline.append = lambda *a, **k: 0  # the baseline: the same store without its audit event
    try:
        out = []
        for up, det in items:
            t0 = time.perf_counter()
            pipeline.store_prediction(engine, lake, up, det, score_thr=0.5, nms_thr=0.5, model_version="b",
                                      run_id=uuid.uuid4().hex, source="ingest")
            out.append(time.perf_counter() - t0)
        return out
    finally:
        pipeline.append = real


def run(url: str, n: int, tmp: Path, settings) -> dict:  # noqa: ANN001
    engine = make_engine(url)
    upgrade(engine)
    lake = LocalLake(tmp / f"lake-{uuid.uuid4().hex[:6]}")
    items = _uploads(2 * n, settings)
    with_audit, without = [], []
    for k in range(0, n, 10):  # interleaved rounds of 10: machine load hits both alike
        without += _time(engine, lake, items[2 * k:2 * k + 10], audited=False)
        with_audit += _time(engine, lake, items[2 * k + 10:2 * k + 20], audited=True)
    assert verify(engine).ok
    engine.dispose()
    a, b = statistics.median(with_audit) * 1000, statistics.median(without) * 1000
    return {"db": url.split(":")[0], "images": n, "with_audit_ms": round(a, 2), "without_ms": round(b, 2),
            "ratio": round(a / b, 2), "p90_with_ms": round(float(np.percentile(with_audit, 90)) * 1000, 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=200)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="cxr-bench-audit-"))
    settings = load_settings(data_dir=tmp / "var")
    urls = [f"sqlite:///{tmp / 'bench.db'}"]
    try:
        from cxr.devtools.services import running_env

        env = running_env()
        if env and env.get("CXR_DB_URL"):
            name = f"cxr_bench_{uuid.uuid4().hex[:8]}"
            admin = make_engine(env["CXR_DB_URL"])
            with admin.begin() as conn:
                conn.execute(text(f"CREATE DATABASE `{name}`"))
            urls.append(admin.url.set(database=name).render_as_string(hide_password=False))
    except Exception as exc:  # noqa: BLE001 - MariaDB is optional here
        print(f"MariaDB skipped: {exc}", file=sys.stderr)
        admin = None
    results = [run(u, args.images, tmp, settings) for u in urls]
    if len(urls) > 1 and admin is not None:
        with admin.begin() as conn:
            conn.execute(text(f"DROP DATABASE `{urls[1].rsplit('/', 1)[1].split('?')[0]}`"))
    for r in results:
        print(f"{r['db']:<16} {r['images']} images: {r['with_audit_ms']} ms with the audit event, "
              f"{r['without_ms']} ms without: {r['ratio']}x (goal <= 1.5x)")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
