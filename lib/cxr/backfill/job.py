"""The backfill job: list a PACS export once, split it into Spark tasks, run ingest's per-file path
in each, collect the counts and refusals, write the run record and the refusals parquet.

On ``local[N]`` here; on AWS the same :func:`run_backfill` runs inside a Glue job
(``glue/backfill_job.py``) or an EMR step, on the session the platform built.

- **Listing** (driver): :func:`cxr.backfill.source.list_source`, a folder or an ``s3://`` prefix.
- **Tasks**: ``parallelize(files, n).mapPartitions(...)``: :func:`cxr.backfill.tasks.run_partition`
  opens its stores, source and predictor once per task (the ONNX session is cached per Python
  worker, which Spark reuses), and skips files already stored (``image.upload_key``).
- **Threads**: each task gets its share of the cores for the JPEG 2000 decode and ONNX Runtime
  (``local[2]`` on 2 cores: one each; on a cluster ``spark.task.cpus``), so tasks never fight over cores.
- **Key**: the de-identification key is resolved once on the driver (``CXR_DEID_KEY`` or the key
  file) and handed to every task, so every executor maps UIDs and hashes uploads the same way.
- **Progress**: files done out of total and the rate, from an accumulator that each finished task
  adds its file count to (a task is ``files_per_task`` files).
"""

from __future__ import annotations

import math
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from pydantic import SecretStr
from pyspark.accumulators import Accumulator
from pyspark.sql import SparkSession
from tqdm import tqdm

from cxr.backfill.report import BackfillReport, write_report
from cxr.backfill.source import SourceFile, open_source
from cxr.backfill.tasks import PartitionResult, TaskSpec, run_partition
from cxr.config import Settings
from cxr.dicom.deid import load_key
from cxr.ingest import names
from cxr.ingest.pipeline import utcnow
from cxr.model.codecs import cpu_count
from cxr.model.registry import read_metadata, resolve_model_dir
from cxr.stores import layout
from cxr.stores.catalog import Stores
from cxr.stores.spark import spark_session

FILES_PER_TASK = 25


@dataclass(frozen=True)
class Plan:
    """How a run is split: tasks, files per task, threads per task."""

    files: int
    tasks: int
    threads: int


def plan_tasks(n_files: int, files_per_task: int, parallelism: int, cores: int) -> Plan:
    """``ceil(n / files_per_task)`` tasks (at least one), and each task's share of the cores."""
    tasks = max(1, math.ceil(n_files / max(1, files_per_task))) if n_files else 0
    return Plan(n_files, tasks, max(1, cores // max(1, parallelism)))


def _spark_task(files: Iterator[SourceFile], spec: TaskSpec, done: Accumulator) -> Iterator[PartitionResult]:
    result = run_partition(files, spec)
    done.add(result.files)
    yield result


def _collect(job: Callable[[], list[PartitionResult]], done: Accumulator, total: int,
             progress: bool | None) -> list[PartitionResult]:
    """Run the Spark action in a thread; show files done / total and the rate while it runs."""
    box: dict[str, object] = {}

    def target() -> None:
        try:
            box["results"] = job()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            box["error"] = exc

    worker = threading.Thread(target=target, name="cxr-backfill-job", daemon=True)
    bar = tqdm(total=total, unit="file", desc="backfill", disable=None if progress is None else not progress)
    worker.start()
    try:
        while worker.is_alive():
            worker.join(0.5)
            bar.update(min(total, int(done.value)) - bar.n)
        bar.update(total - bar.n if "results" in box else 0)
    finally:
        bar.close()
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return box["results"]  # type: ignore[return-value]


def task_spec(source: str, settings: Settings, *, run_id: str, score_thr: float, nms_thr: float, model_dir: Path,
              threads: int, shipped: bool) -> TaskSpec:
    """What the tasks get: absolute paths, the driver's key, the task's thread count."""
    key = load_key(settings).decode()
    task_settings = settings.model_copy(update={
        "deid_key": SecretStr(key), "decode_threads": threads, "data_dir": Path(settings.data_dir).resolve(),
        "models_dir": Path(settings.models_dir).resolve(),
    })
    return TaskSpec(source=source, settings=task_settings, run_id=run_id, score_thr=score_thr, nms_thr=nms_thr,
                    model_dir=model_dir.name if shipped else str(model_dir), threads=threads, shipped_model=shipped)


def run_backfill(source: str, settings: Settings | None = None, *, stores: Stores | None = None,
                 spark: SparkSession | None = None, master: str | None = None, files_per_task: int = FILES_PER_TASK,
                 run_id: str | None = None, score_thr: float | None = None, nms_thr: float | None = None,
                 progress: bool | None = None) -> BackfillReport:
    """Backfill every image under ``source`` (a folder or ``s3://bucket/prefix``); see the module docstring."""
    t0 = time.perf_counter()
    stores = stores or Stores.open(settings)
    settings = stores.settings
    score_thr = settings.score_thr if score_thr is None else score_thr
    nms_thr = settings.nms_thr if nms_thr is None else nms_thr
    run_id = layout.check_name(run_id or f"backfill-{utcnow():%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}", "run id")
    src = open_source(source, settings)  # a bad SOURCE fails before anything else is done
    model_dir = resolve_model_dir(settings.models_dir, settings.model_name, settings.model_version).resolve()
    meta = read_metadata(model_dir)
    files = src.list()
    list_s = time.perf_counter() - t0
    own_session = spark is None
    spark = spark or spark_session(settings, master=master, app_name="cxr-backfill", jdbc=False,
                                   conf={"spark.task.maxFailures": "4", "spark.python.worker.reuse": "true"})
    spark_s = time.perf_counter() - t0 - list_s if own_session else 0.0
    try:
        sc = spark.sparkContext
        local = sc.master.startswith("local")
        # a local master shares this machine's cores among its task slots; a cluster gives each task spark.task.cpus
        task_cpus = int(sc.getConf().get("spark.task.cpus", "1"))
        plan = plan_tasks(len(files), files_per_task, sc.defaultParallelism if local else 1,
                          cpu_count() if local else task_cpus)
        if not local:  # executors on other hosts: ship the model folder with the job
            sc.addFile(str(model_dir), recursive=True)
        spec = task_spec(source, settings, run_id=run_id, score_thr=score_thr, nms_thr=nms_thr, model_dir=model_dir,
                         threads=plan.threads, shipped=not local)
        report = BackfillReport(run_id=run_id, source=source if source.startswith("s3://") else names.mask_path(source),
                                master=sc.master, partitions=plan.tasks, total=len(files),
                                model_version=meta.version, score_thr=float(score_thr), nms_thr=float(nms_thr),
                                list_s=round(list_s, 3), spark_s=round(spark_s, 3))
        if files:
            done = sc.accumulator(0)
            rdd = sc.parallelize(files, plan.tasks).mapPartitions(partial(_spark_task, spec=spec, done=done))
            for part in _collect(rdd.collect, done, len(files), progress):
                report.result.merge(part)
    finally:
        if own_session:
            spark.stop()
    report.seconds = round(time.perf_counter() - t0, 3)
    return write_report(stores.lake, report)
