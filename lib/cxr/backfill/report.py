"""A backfill's summary, its run record (``backfill/<run_id>/run.json``) and its refusals report
(``backfill/<run_id>/refusals.parquet``), both written to the lake through the lake adapter.

The refusals parquet has one row per refused file: ``location`` (the file's path or key with
identifiers removed and digit runs masked, as everything cxr shows), ``reason`` (the one-line
refusal) and ``bytes``. It is written even when empty, so a reader always finds one per run.
"""

from __future__ import annotations

import io
import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime

import pyarrow as pa
import pyarrow.parquet as pq

from cxr.backfill.tasks import PartitionResult, Refusal
from cxr.stores import layout
from cxr.stores.lake import Lake, ObjectNotFound

REFUSALS_SCHEMA = pa.schema([("location", pa.string()), ("reason", pa.string()), ("bytes", pa.int64())])


@dataclass
class BackfillReport:
    """What one ``cxr backfill`` run did."""

    run_id: str
    source: str  # identifiers removed (names.mask_path of a folder; the s3:// URL as given)
    master: str
    partitions: int
    total: int
    model_version: str
    score_thr: float
    nms_thr: float
    started_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    result: PartitionResult = field(default_factory=PartitionResult)
    seconds: float = 0.0
    list_s: float = 0.0
    spark_s: float = 0.0  # session start (0 when a session was handed in)
    record_key: str = ""
    refusals_key: str = ""

    @property
    def rate(self) -> float:
        """Files per second over the whole run (listing and Spark start included)."""
        return self.result.files / self.seconds if self.seconds > 0 else 0.0

    @property
    def ok(self) -> bool:
        return not self.result.refused

    def as_dict(self) -> dict[str, object]:
        d = asdict(self)
        r = d.pop("result")
        d.update(files=r["files"], stored=r["stored"], new_images=r["new_images"], skipped=r["skipped"],
                 refused=len(r["refused"]), rate_per_s=round(self.rate, 3),
                 task_seconds={k: round(r[k], 3) for k in ("setup_s", "read_s", "decode_s", "inference_s", "store_s",
                                                           "seconds")})
        return d

    def lines(self) -> list[str]:
        r = self.result
        return [
            f"backfill {self.run_id}: {r.files:,} of {self.total:,} file(s) from {self.source} on {self.master} "
            f"({self.partitions} task(s)) in {self.seconds:.1f} s, {self.rate:.2f} files/s",
            f"  stored {r.stored:,} prediction(s) ({r.new_images:,} new image(s)), skipped {r.skipped:,} already "
            f"stored, refused {len(r.refused):,}; model {self.model_version}",
            f"  run record {self.record_key}; refusals {self.refusals_key}",
        ]


def refusals_parquet(refused: list[Refusal]) -> bytes:
    """The refusals as parquet bytes (zstd)."""
    table = pa.Table.from_pylist([asdict(r) for r in refused], schema=REFUSALS_SCHEMA)
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd")
    return buf.getvalue()


def write_report(lake: Lake, report: BackfillReport) -> BackfillReport:
    """Put the refusals parquet, then the run record (last: a record means the run finished)."""
    report.refusals_key = layout.backfill_refusals_key(report.run_id)
    report.record_key = layout.backfill_record_key(report.run_id)
    lake.put(report.refusals_key, refusals_parquet(report.result.refused), content_type="application/vnd.apache.parquet")
    record = report.as_dict()
    lake.put(report.record_key, (json.dumps(record, indent=2, default=str) + "\n").encode(), content_type="application/json")
    return report


def read_refusals(lake: Lake, run_id: str) -> list[dict[str, object]]:
    """The refusals of a run, as rows."""
    return pq.read_table(io.BytesIO(lake.get(layout.backfill_refusals_key(run_id)))).to_pylist()


def list_runs(lake: Lake) -> list[dict[str, object]]:
    """The run records of every finished backfill, oldest first."""
    runs = []
    for obj in lake.list(layout.BACKFILL_PREFIX):
        if layout.parse_backfill_record_key(obj.key) is None:
            continue
        try:
            runs.append(json.loads(lake.get(obj.key)))
        except (ObjectNotFound, ValueError):
            continue
    return sorted(runs, key=lambda r: str(r.get("started_at", "")))
