"""Benchmark the DICOM listener against `cxr ingest` on the same files, and the listener's peak memory.

Two phantom sets (synthetic, fake patients): ``--n-small`` 512 x 512 images in explicit VR little
endian, and ``--n-full`` 2048 x 2048 images in JPEG 2000 lossless (the size of a real chest
radiograph). For each set and for 1 and 4 concurrent senders, a fresh data directory (SQLite +
lake directory, or with ``--services`` a fresh MariaDB database and S3 bucket of `cxr services up`)
gets its own ``cxr dicom listen`` process (default settings: 2 workers); once it answers C-ECHO,
dcmtk ``storescu`` processes send the set (split between the senders) and the clock runs until the
last sender exits: every instance was then stored and acknowledged. The baseline is
``cxr ingest --json`` on the same files into another fresh directory: its own ``seconds`` (decode,
de-identify, detect, store; no start-up) and its wall time. The listener's peak resident memory
is its ``VmHWM`` from /proc, read before it stops.

    .venv/bin/python benchmarks/bench_dicom.py                          # 40 x 512 px, 12 x 2048 px J2K
    .venv/bin/python benchmarks/bench_dicom.py --n-small 200 --n-full 40 --json out.json
    .venv/bin/cxr services up && .venv/bin/python benchmarks/bench_dicom.py --services
"""

from __future__ import annotations

import argparse
import copy
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pydicom
from cxr.dicom.scu import Peer, echo
from cxr.model.phantoms import dicom_bytes, generate_phantom
from cxr.stores import db
from pydicom.uid import JPEG2000Lossless, generate_uid
from sqlalchemy import text
from sqlalchemy.engine import make_url

REPO = Path(__file__).resolve().parents[1]


def phantom_set(folder: Path, n: int, size: int, *, j2k: bool) -> list[Path]:
    """``n`` instances of one phantom as different instances and studies (new UIDs each)."""
    folder.mkdir(parents=True, exist_ok=True)
    base = pydicom.dcmread(io.BytesIO(dicom_bytes(generate_phantom(42, size=size))))
    if j2k:
        base.compress(JPEG2000Lossless)
    out = []
    for i in range(n):
        ds = copy.deepcopy(base)
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
        path = folder / f"img-{i:04d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        out.append(path)
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Stores:
    """A fresh data directory, and with ``--services`` a fresh MariaDB database + S3 bucket."""

    def __init__(self, root: Path, services: dict[str, str] | None):
        self.root = root
        self.env = {"CXR_DATA_DIR": str(root / "var"), "CXR_MODELS_DIR": str(REPO / "models"),
                    "CXR_ENV_FILE": str(root / "none.env")}
        self.cleanup = []
        if services:
            from cxr.devtools.services import s3_client

            url = make_url(services["CXR_DB_URL"])
            name = f"cxr_bench_{uuid.uuid4().hex[:8]}"
            admin = db.make_engine(url.render_as_string(hide_password=False), pool_size=1)
            with admin.begin() as conn:
                conn.execute(text(f"CREATE DATABASE `{name}`"))
            bucket = f"cxr-bench-{uuid.uuid4().hex[:8]}"
            s3 = s3_client(services["CXR_S3_ENDPOINT_URL"])
            s3.create_bucket(Bucket=bucket)
            self.env.update({k: v for k, v in services.items() if k.startswith("AWS_")})
            self.env.update({"CXR_DB_URL": url.set(database=name).render_as_string(hide_password=False),
                             "CXR_LAKE_URL": f"s3://{bucket}", "CXR_S3_ENDPOINT_URL": services["CXR_S3_ENDPOINT_URL"]})

            def drop() -> None:
                with admin.begin() as conn:
                    conn.execute(text(f"DROP DATABASE IF EXISTS `{name}`"))
                for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
                    keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
                    if keys:
                        s3.delete_objects(Bucket=bucket, Delete={"Objects": keys})
                s3.delete_bucket(Bucket=bucket)
            self.cleanup.append(drop)
        run([sys.executable, "-m", "cxr", "db", "upgrade"], self.full_env())

    def full_env(self, **extra: str) -> dict[str, str]:
        return {**{k: v for k, v in os.environ.items() if not k.startswith("CXR_")}, **self.env, **extra}

    def close(self) -> None:
        for fn in self.cleanup:
            fn()
        shutil.rmtree(self.root, ignore_errors=True)


def run(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    res = subprocess.run(argv, env=env, capture_output=True, text=True, check=False, cwd=REPO)
    if res.returncode != 0:
        raise SystemExit(f"{' '.join(argv[:4])} failed: {(res.stderr or res.stdout)[-1500:]}")
    return res


def through_listener(files: list[Path], senders: int, stores: Stores) -> dict[str, float]:
    port = free_port()
    env = stores.full_env(CXR_DICOM_PORT=str(port), CXR_DICOM_ALLOWED_AES="STORESCU@127.0.0.1")
    log = (stores.root / "listen.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "cxr", "dicom", "listen"], env=env, cwd=REPO, stdout=log,
                            stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if echo(Peer("CXR", "127.0.0.1", port), calling_ae="STORESCU", timeout=2) == 0:
                    break
            except Exception:  # noqa: BLE001 - not up yet
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise SystemExit(f"listener did not start: {(stores.root / 'listen.log').read_text()[-1500:]}") from None
                time.sleep(0.3)
        groups = [files[i::senders] for i in range(senders)]
        t0 = time.perf_counter()
        procs = [subprocess.Popen(["storescu", "-xv", "-aet", "STORESCU", "-aec", "CXR", "127.0.0.1", str(port),
                                   *map(str, g)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
                 for g in groups]
        errors = [p.communicate()[1] for p in procs]
        seconds = time.perf_counter() - t0
        if any(p.returncode for p in procs):
            raise SystemExit(f"storescu failed: {errors}")
        peak_kb = int(next(line.split()[1] for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines()
                           if line.startswith("VmHWM:")))
        stored = (stores.root / "listen.log").read_text().count("-> status 0x0000 stored transaction")
        if stored != len(files):
            raise SystemExit(f"the listener stored {stored} of {len(files)} instances")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(120)
        log.close()
    return {"seconds": round(seconds, 2), "per_s": round(len(files) / seconds, 2), "peak_rss_mb": round(peak_kb / 1024)}


def through_ingest(files: list[Path], stores: Stores) -> dict[str, float]:
    t0 = time.perf_counter()
    res = run([sys.executable, "-m", "cxr", "ingest", "--json", "--no-progress", str(files[0].parent)], stores.full_env())
    wall = time.perf_counter() - t0
    summary = json.loads(res.stdout)
    if summary["n_stored"] != len(files):
        raise SystemExit(f"cxr ingest stored {summary['n_stored']} of {len(files)}")
    return {"seconds": summary["seconds"], "per_s": round(len(files) / summary["seconds"], 2),
            "wall_s": round(wall, 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-small", type=int, default=40, help="512 x 512 explicit VR little endian instances")
    ap.add_argument("--n-full", type=int, default=12, help="2048 x 2048 JPEG 2000 lossless instances")
    ap.add_argument("--services", action="store_true", help="MariaDB + S3 of `cxr services up` (default: SQLite + dir)")
    ap.add_argument("--json", type=Path, help="write the results here too")
    args = ap.parse_args()
    services = None
    if args.services:
        from cxr.devtools import services as svc

        services = svc.running_env()
    work = Path(tempfile.mkdtemp(prefix="cxr-bench-dicom-"))
    results: dict[str, dict] = {}
    try:
        sets = {"512px explicit LE": phantom_set(work / "small", args.n_small, 512, j2k=False),
                "2048px JPEG 2000": phantom_set(work / "full", args.n_full, 2048, j2k=True)}
        for label, files in sets.items():
            row: dict[str, object] = {"instances": len(files),
                                      "bytes": sum(f.stat().st_size for f in files)}
            for key, senders in (("cxr ingest", 0), ("listener, 1 sender", 1), ("listener, 4 senders", 4)):
                stores = Stores(work / f"run-{uuid.uuid4().hex[:6]}", services)
                try:
                    row[key] = through_listener(files, senders, stores) if senders else through_ingest(files, stores)
                finally:
                    stores.close()
                print(f"{label:<18} {key:<20} {row[key]}", flush=True)
            base = row["cxr ingest"]["per_s"]
            row["ratio 1 sender / ingest"] = round(row["listener, 1 sender"]["per_s"] / base, 2)
            row["ratio 4 senders / ingest"] = round(row["listener, 4 senders"]["per_s"] / base, 2)
            results[label] = row
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(results, indent=2))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
