"""Backfill throughput: ``cxr ingest`` in one process against ``cxr backfill`` on local[1] and local[2].

A folder of N full-size (default 2048 x 2048) 12-bit JPEG 2000 lossless DICOM phantoms, each a
different instance (its own fake patient, study and instance UIDs, so its own de-identified bytes
and sha256). Encoding a 2k x 2k J2K costs about 3 s, so ``--distinct`` pixel sets are drawn and
encoded, and every file carries one of them (the decode work per file is the same as if all were
distinct). Each command runs in its own process against a fresh MariaDB database (the server of
``cxr services up``) and a fresh local-directory lake, one after the other:

1. ``cxr ingest DIR`` (one process; the JPEG 2000 decode uses every core);
2. ``cxr backfill DIR --master local[1]``, pinned to one CPU (``taskset -c 0``: one core, and so
   one decode thread; unpinned, its single task would decode with both cores);
3. ``cxr backfill DIR --master local[2]`` (each task: one decode and one ONNX Runtime thread);
4. the same backfill again on the same DB and lake: it must store nothing and cost <= 10% of 3.

Reported: wall time of each command (process start, Spark start and listing included), images
per second, the scaling from local[1] to local[2], local[2] against ingest, the re-run's share,
and the load average sampled every 5 s during each run. Scratch files go to ``--work`` (default
``var/bench-backfill``) and the lakes are deleted after each run (2,000 files are ~9 GB, each
run's lake ~14 GB).

    .venv/bin/cxr services up
    .venv/bin/python benchmarks/bench_backfill.py --images 2000
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def make_export(folder: Path, n: int, distinct: int, size: int) -> list[Path]:
    """``n`` DICOM files under ``folder`` (kept between runs of the benchmark)."""
    import pydicom
    from pydicom.uid import generate_uid
    from tqdm import tqdm

    from cxr.model.phantoms import dicom_bytes, fake_patient, generate_phantom

    folder.mkdir(parents=True, exist_ok=True)
    templates = []
    for k in tqdm(range(distinct), desc="pixel sets (J2K encode)", disable=None):
        t = folder.parent / "templates" / f"t{k:03d}.dcm"
        if not t.exists():
            t.parent.mkdir(parents=True, exist_ok=True)
            t.write_bytes(dicom_bytes(generate_phantom(700_000 + k, size), bits_stored=12, jpeg2000=True))
        templates.append(t)
    paths = []
    for i in tqdm(range(n), desc="instances", disable=None):
        p = folder / f"study{i // 100:03d}" / f"cr_{i:05d}.dcm"
        paths.append(p)
        if p.exists():
            continue
        ds = pydicom.dcmread(templates[i % distinct])
        for key, value in fake_patient(900_000 + i).items():
            if key != "PrivateValue" and key in ds:
                setattr(ds, key, value)
        for kind in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "FrameOfReferenceUID"):
            setattr(ds, kind, generate_uid(entropy_srcs=[f"bench-backfill-{kind}-{i}"]))
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        p.parent.mkdir(parents=True, exist_ok=True)
        buf = io.BytesIO()
        ds.save_as(buf, enforce_file_format=True)
        p.write_bytes(buf.getvalue())
    return paths


class LoadSampler:
    """The 1-minute load average every ``every`` seconds while a command runs."""

    def __init__(self, every: float = 5.0):
        self.every, self.samples, self._stop = every, [os.getloadavg()[0]], threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self.samples.append(os.getloadavg()[0])

    def __enter__(self) -> LoadSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def summary(self) -> dict[str, float]:
        return {"min": min(self.samples), "mean": statistics.mean(self.samples), "max": max(self.samples)}


def fresh_database(admin_url: str) -> str:
    """A new, migrated MariaDB database on the services' server; returns its URL."""
    from sqlalchemy import text
    from sqlalchemy.engine import make_url

    from cxr.stores import db

    url = make_url(admin_url)
    name = f"cxr_bench_{uuid.uuid4().hex[:10]}"
    admin = db.make_engine(url.render_as_string(hide_password=False), pool_size=1)
    with admin.begin() as conn:
        conn.execute(text(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"))
    admin.dispose()
    full = url.set(database=name).render_as_string(hide_password=False)
    engine = db.make_engine(full)
    db.upgrade(engine)
    engine.dispose()
    return full


def drop_database(db_url: str) -> None:
    from sqlalchemy import text
    from sqlalchemy.engine import make_url

    from cxr.stores import db

    url = make_url(db_url)
    admin = db.make_engine(url.set(database=None).render_as_string(hide_password=False), pool_size=1)
    with admin.begin() as conn:
        conn.execute(text(f"DROP DATABASE IF EXISTS `{url.database}`"))
    admin.dispose()


def counts(db_url: str) -> dict[str, int]:
    from sqlalchemy import func, select

    from cxr.stores import db
    from cxr.stores.schema import image, transaction

    engine = db.make_engine(db_url)
    with engine.connect() as c:
        out = {"images": int(c.execute(select(func.count()).select_from(image)).scalar_one()),
               "transactions": int(c.execute(select(func.count()).select_from(transaction)).scalar_one())}
    engine.dispose()
    return out


def run(label: str, args: list[str], env: dict[str, str], n: int, cpus: str | None = None) -> dict:
    """One cxr command in its own process (pinned to ``cpus`` with taskset), timed, with the load sampled."""
    pin = ["taskset", "-c", cpus] if cpus else []
    with LoadSampler() as load:
        t = time.perf_counter()
        res = subprocess.run([*pin, sys.executable, "-m", "cxr", *args], env=env, cwd=REPO, capture_output=True,
                             text=True)
        wall = time.perf_counter() - t
    if res.returncode not in (0, 3):
        raise SystemExit(f"{label} failed ({res.returncode}):\n{res.stderr[-3000:]}")
    out = {"label": label, "wall_s": round(wall, 2), "images_per_s": round(n / wall, 3), "load": load.summary()}
    try:
        report = json.loads(res.stdout)
        if isinstance(report.get("stored"), list):  # cxr ingest --json lists every stored file: keep the count
            report["stored"] = len(report["stored"])
        out["report"] = report
    except ValueError:
        out["stdout"] = res.stdout[-2000:]
    print(f"{label}: {wall:.1f} s, {n / wall:.3f} images/s, load {out['load']['mean']:.1f} "
          f"({out['load']['min']:.1f}-{out['load']['max']:.1f})", flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=2000)
    ap.add_argument("--distinct", type=int, default=40, help="distinct pixel sets (J2K encodes)")
    ap.add_argument("--size", type=int, default=2048)
    ap.add_argument("--files-per-task", type=int, default=25)
    ap.add_argument("--work", type=Path, default=REPO / "var" / "bench-backfill")
    ap.add_argument("--skip", nargs="*", default=[], choices=["ingest", "local1"], help="leave out a run")
    ap.add_argument("--ingest-one-thread", action="store_true", help="also run cxr ingest with one decode thread "
                    "(the single-core ingest the backfill's goals were set against)")
    ap.add_argument("--keep-files", action="store_true", help="keep the DICOM folder for the next run")
    ap.add_argument("--no-pin", action="store_true", help="do not pin local[1] and the one-thread ingest to one "
                    "CPU (taskset -c 0); unpinned, local[1]'s one task decodes with every core")
    ap.add_argument("--only", nargs="*", default=None, choices=["ingest", "ingest1", "local1", "local2"],
                    help="run only these")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks/out/bench_backfill.json")
    a = ap.parse_args()
    from cxr.devtools import services as svc

    env_services = svc.read_env(svc.env_file(REPO / "var"))
    files = make_export(a.work / "export", a.images, min(a.distinct, a.images), a.size)
    export = a.work / "export"
    n = len(files)
    size_gb = sum(p.stat().st_size for p in files) / 1e9
    base = {k: v for k, v in os.environ.items() if not k.startswith("CXR_")}
    base.update(PYTHONPATH=str(REPO / "lib"), CXR_MODELS_DIR=str(REPO / "models"), CXR_DEID_KEY="bench-key-not-a-secret",
                CXR_DATA_DIR=str(a.work / "data"))
    results = {"images": n, "distinct_pixel_sets": min(a.distinct, n), "size": a.size, "export_gb": round(size_gb, 2),
               "cores": os.cpu_count(), "runs": []}
    plan = [("cxr ingest (one process)", ["ingest", str(export), "--json", "--no-progress"], "ingest")]
    if a.ingest_one_thread or (a.only is not None and "ingest1" in a.only):
        plan.append(("cxr ingest (one process, one core)", ["ingest", str(export), "--json",
                                                                         "--no-progress"], "ingest1"))
    plan += [
            ("cxr backfill local[1] (one core)", ["backfill", str(export), "--master", "local[1]", "--json", "--no-progress",
                                       "--files-per-task", str(a.files_per_task)], "local1"),
            ("cxr backfill local[2]", ["backfill", str(export), "--master", "local[2]", "--json", "--no-progress",
                                       "--files-per-task", str(a.files_per_task)], "local2")]
    for label, args, key in plan:
        if key in a.skip or (a.only is not None and key not in a.only):
            continue
        db_url = fresh_database(env_services["CXR_DB_URL"])
        lake = a.work / f"lake-{key}"
        env = {**base, "CXR_DB_URL": db_url, "CXR_LAKE_URL": lake.resolve().as_uri(),
               **({"CXR_DECODE_THREADS": "1"} if key == "ingest1" else {})}
        r = run(label, args, env, n, cpus="0" if key in ("local1", "ingest1") and not a.no_pin else None)
        r["counts"] = counts(db_url)
        results["runs"].append(r)
        if key == "local2":  # the same backfill again: nothing to store
            again = run("cxr backfill local[2], re-run", args, env, n)
            again["counts"] = counts(db_url)
            again["share_of_first"] = round(again["wall_s"] / r["wall_s"], 4)
            results["runs"].append(again)
        drop_database(db_url)
        shutil.rmtree(lake, ignore_errors=True)
    by = {r["label"]: r for r in results["runs"]}
    l1, l2 = by.get("cxr backfill local[1] (one core)"), by.get("cxr backfill local[2]")
    ing, ing1 = by.get("cxr ingest (one process)"), by.get("cxr ingest (one process, one core)")
    if l1 and l2:
        results["scaling_local1_to_local2"] = round(l1["wall_s"] / l2["wall_s"], 3)
    if ing and l2:
        results["local2_vs_ingest"] = round(ing["wall_s"] / l2["wall_s"], 3)
    if ing1 and l2:
        results["local2_vs_ingest_one_thread"] = round(ing1["wall_s"] / l2["wall_s"], 3)
    print(json.dumps({k: v for k, v in results.items() if k != "runs"}, indent=2))
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(results, indent=2, default=str))
    if not a.keep_files:
        shutil.rmtree(a.work, ignore_errors=True)


if __name__ == "__main__":
    main()
