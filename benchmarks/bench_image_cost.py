"""Per-image cost of the full-size JPEG 2000 DICOM path: today's path against the old one, in the same run.

Full-size (default 2048 x 2048) 12-bit phantoms, JPEG 2000 lossless, go through ingest's per-file path
(read_upload, decode_upload, detect, store_detected into a fresh SQLite DB and lake) in worker
processes, one per (round, variant), interleaved so that load changes hit every variant alike:

- ``old``: the lib of ``--old-rev`` (git archive of that commit), model 1.0.0, ORT default threads;
- ``new``: this checkout's lib as ``cxr ingest`` runs it (decode threads = every core, ORT default
  threads, the registry's latest model);
- ``new-1core``: this lib as one backfill task on ``local[2]`` gets it (1 decode thread, 1 ORT thread).

Each worker times the stages (pixel decode inside pydicom's ``Decoder.as_array``, the display
conversion, the rendition PNG, the rest of decode_upload: parse, de-identification, re-encode,
hashes; inference; the stores) and records digests of what it stored: the de-identified DICOM's
sha256 and the rendition's decoded pixels. The parent checks the digests are identical across
variants and prints the breakdown. ``--decoders`` adds the decoder comparison for each syntax.

    .venv/bin/python benchmarks/bench_image_cost.py --files 6 --rounds 3 --decoders --extra-path /tmp/benchdeps
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
STAGES = ("read", "pixel decode", "display conversion", "rendition PNG", "parse, de-id, re-encode, hashes",
          "inference", "store (lake + DB)")


def make_files(out: Path, n: int, size: int) -> list[Path]:
    """``n`` distinct full-size 12-bit JPEG 2000 lossless phantoms (fake patients)."""
    from cxr.model.phantoms import dicom_bytes, generate_phantom

    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        p = out / f"cr_{i:04d}.dcm"
        if not p.exists():
            p.write_bytes(dicom_bytes(generate_phantom(500_000 + i, size), bits_stored=12, jpeg2000=True))
        paths.append(p)
    return paths


# -- the worker (runs with either lib on PYTHONPATH) -------------------------------------------
def _timed(store: dict[str, float], key: str, fn: Callable[..., object]) -> Callable[..., object]:
    def wrapper(*a: object, **kw: object) -> object:
        t = time.perf_counter()
        try:
            return fn(*a, **kw)
        finally:
            store[key] = store.get(key, 0.0) + time.perf_counter() - t
    return wrapper


def worker(files: list[Path], threads: int | None, out: Path) -> None:
    import numpy as np
    from PIL import Image
    from pydicom.pixels.decoders import base as pd_base

    import cxr.ingest.decode as dec
    from cxr.config import get_settings
    from cxr.ingest import pipeline
    from cxr.model.predict import load_predictor
    from cxr.stores import db
    from cxr.stores.catalog import Stores

    settings = get_settings()
    stores = Stores.open(settings)
    db.upgrade(stores.engine)
    predictor = load_predictor(settings, threads=threads)
    t: dict[str, float] = {}
    pd_base.Decoder.as_array = _timed(t, "as_array", pd_base.Decoder.as_array)
    dec.dicom_to_array = _timed(t, "pixels", dec.dicom_to_array)
    dec.rendition = _timed(t, "rendition", dec.rendition)
    rows = []
    for i, f in enumerate([files[0], *files]):  # the first file twice: a warm-up, not recorded
        t.clear()
        t0 = time.perf_counter()
        name, data = pipeline.read_upload(f, settings)
        t1 = time.perf_counter()
        up = dec.decode_upload(name, data, settings)
        t2 = time.perf_counter()
        d = pipeline.detect(up, predictor, score_thr=settings.score_thr, nms_thr=settings.nms_thr)
        t3 = time.perf_counter()
        pipeline.store_detected(stores, d, score_thr=settings.score_thr, nms_thr=settings.nms_thr,
                                model_version=predictor.model_version, run_id=f"bench-{i}", source="ingest")
        t4 = time.perf_counter()
        if i == 0:
            continue
        rend = np.asarray(Image.open(io.BytesIO(up.rendition_png)))
        rows.append({
            "file": f.name, "total": t4 - t0, "read": t1 - t0, "pixel decode": t["as_array"],
            "display conversion": t["pixels"] - t["as_array"], "rendition PNG": t["rendition"],
            "parse, de-id, re-encode, hashes": (t2 - t1) - t["pixels"] - t["rendition"],
            "inference": t3 - t2, "store (lake + DB)": t4 - t3,
            "stored_sha256": up.sha256, "rendition_pixels": hashlib.sha256(rend.tobytes()).hexdigest(),
            "rendition_bytes": len(up.rendition_png), "array": hashlib.sha256(up.array.tobytes()).hexdigest(),
            "model": predictor.model_version,
        })
    out.write_text(json.dumps(rows))


# -- the parent ---------------------------------------------------------------------------------
def old_lib(rev: str, dest: Path) -> Path:
    data = subprocess.run(["git", "-C", str(REPO), "archive", rev, "lib"], check=True, capture_output=True).stdout
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        tar.extractall(dest, filter="data")
    return dest / "lib"


def run_variant(name: str, lib: Path, files: list[Path], work: Path, env: dict[str, str], threads: int | None,
                rnd: int) -> list[dict]:
    data_dir = work / f"{name}-{rnd}"
    out = data_dir / "rows.json"
    shutil.rmtree(data_dir, ignore_errors=True)  # a rerun with the same --work starts clean
    data_dir.mkdir(parents=True)
    cmd = [sys.executable, __file__, "--worker", "--out", str(out), *(["--threads", str(threads)] if threads else []),
           *map(str, files)]
    full = {**os.environ, **env, "PYTHONPATH": str(lib), "CXR_DATA_DIR": str(data_dir)}
    subprocess.run(cmd, check=True, env=full, cwd=REPO)
    rows = json.loads(out.read_text())
    shutil.rmtree(data_dir / "lake", ignore_errors=True)  # keep the disk small: the stored objects are not needed
    return rows


def summarize(results: dict[str, list[dict]]) -> dict:
    summary = {}
    for name, rows in results.items():
        summary[name] = {k: statistics.median(r[k] for r in rows) for k in ("total", *STAGES)}
        summary[name]["rendition_bytes"] = statistics.median(r["rendition_bytes"] for r in rows)
        summary[name]["n"] = len(rows)
    return summary


def identical(results: dict[str, list[dict]]) -> dict[str, bool]:
    by = {name: {(r["file"]): r for r in rows} for name, rows in results.items()}
    base = by["old"]
    out = {}
    for name, rows in by.items():
        out[name] = {"stored DICOM bytes": all(rows[f]["stored_sha256"] == base[f]["stored_sha256"] for f in rows),
                     "rendition pixels": all(rows[f]["rendition_pixels"] == base[f]["rendition_pixels"] for f in rows),
                     "detector input array": all(rows[f]["array"] == base[f]["array"] for f in rows)}
    return out


def print_table(summary: dict, same: dict) -> None:
    names = list(summary)
    print("| stage | " + " | ".join(names) + " |")
    print("|---|" + "---:|" * len(names))
    for k in (*STAGES, "total"):
        print(f"| {k} | " + " | ".join(f"{summary[n][k] * 1000:.0f} ms" for n in names) + " |")
    print("| rendition size | " + " | ".join(f"{summary[n]['rendition_bytes'] / 1e6:.2f} MB" for n in names) + " |")
    base = summary["old"]["total"]
    print("| speed-up vs old | " + " | ".join(f"{base / summary[n]['total']:.2f}x" for n in names) + " |")
    for n, checks in same.items():
        print(f"{n}: " + ", ".join(f"{k} {'identical' if v else 'DIFFERENT'}" for k, v in checks.items()))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--threads", type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks/out/bench_image_cost.json")
    ap.add_argument("paths", nargs="*", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--files", type=int, default=6, help="distinct full-size phantoms")
    ap.add_argument("--size", type=int, default=2048)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--old-rev", default="3fefa5a", help="the commit whose lib is the old path")
    ap.add_argument("--new-model-version", default="latest")
    ap.add_argument("--work", type=Path, default=None, help="scratch folder (default: a temp dir)")
    ap.add_argument("--decoders", action="store_true", help="also compare the decoders of each syntax")
    ap.add_argument("--extra-path", default=None, help="a pip --target folder with decoders to compare "
                    "(glymur, opencv-python-headless, python-gdcm), appended to sys.path")
    a = ap.parse_args()
    if a.worker:
        return worker(a.paths, a.threads, a.out)
    work = a.work or Path(tempfile.mkdtemp(prefix="cxr-bench-cost-"))
    files = make_files(work / "files", a.files, a.size)
    old = old_lib(a.old_rev, work / "old")
    new = REPO / "lib"
    base_env = {"CXR_DEID_KEY": "bench-key-not-a-secret", "CXR_MODELS_DIR": str(REPO / "models")}
    variants = [("old", old, {"CXR_MODEL_VERSION": "1.0.0"}, None),
                ("new", new, {"CXR_MODEL_VERSION": a.new_model_version, "CXR_DECODE_THREADS": "0"}, None),
                ("new-1core", new, {"CXR_MODEL_VERSION": a.new_model_version, "CXR_DECODE_THREADS": "1"}, 1)]
    results: dict[str, list[dict]] = {n: [] for n, *_ in variants}
    load = []
    for rnd in range(a.rounds):
        for name, lib, env, threads in variants:
            load.append(os.getloadavg()[0])
            results[name] += run_variant(name, lib, files, work / "runs", {**base_env, **env}, threads, rnd)
            print(f"round {rnd + 1}/{a.rounds} {name}: median {statistics.median(r['total'] for r in results[name]):.3f} s",
                  flush=True)
    summary, same = summarize(results), identical(results)
    print(f"\n{a.files} files x {a.rounds} rounds, {a.size} px 12-bit J2K lossless; load average {min(load):.1f}-"
          f"{max(load):.1f}; models: " + ", ".join(f"{n} {results[n][0]['model']}" for n in results))
    print_table(summary, same)
    report = {"summary": summary, "identical": same, "load_average": [min(load), max(load)], "files": a.files,
              "rounds": a.rounds, "size": a.size}
    if a.decoders:
        from bench_decoders import compare_decoders, print_decoders  # the decoder table, beside this script

        report["decoders"] = compare_decoders(files[0], a.extra_path)
        print_decoders(report["decoders"])
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))
    main()
