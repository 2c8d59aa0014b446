"""The pipeline report (``notebooks/pipeline_report.ipynb``): pure tables + one gather.

:func:`gather` is the only function that opens stores; it returns a :class:`PipelineReport`
of plain rows. Everything else turns rows into pandas tables or a plot and can be tested on
hand-made rows. A store that cannot be reached is reported as such (count ``None`` and a note),
so the report always renders.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.axes import Axes
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError

from cxr.config import Settings, get_settings
from cxr.errors import CxrError
from cxr.stores import layout
from cxr.stores.backup_reader import read_backup
from cxr.stores.catalog import Stores
from cxr.stores.db import describe_error
from cxr.stores.lake import Lake
from cxr.stores.runs import RunSummary, read_run_summaries
from cxr.stores.schema import app_user, audit_event, image, pred_bounding_box, review, transaction
from cxr.stores.warehouse import IMAGES_COLLECTION
from cxr.stores.watermark import get_watermark

STORES = ("db", "lake_backup", "warehouse", "mart", "people")
UNDELIVERED_SHOWN = 1000  # undelivered DICOM results listed (newest first)


@dataclass
class PipelineReport:
    """What the report shows, gathered once."""

    counts: dict[str, dict[str, int | None]]  # store -> {what: n}
    box_rows: list[tuple]  # (transaction time, class name), DB + backup, each box once
    model_rows: list[tuple[str, int, datetime | None, datetime | None]]  # version, transactions, first, last
    ingest_rows: list[tuple[str, int, datetime | None, datetime | None]]  # run_id, transactions, first, last
    runs: list[RunSummary] = field(default_factory=list)  # newest first
    undelivered: list[tuple[int, datetime, str | None]] = field(default_factory=list)  # DICOM SRs the PACS lacks
    notes: list[str] = field(default_factory=list)  # stores that could not be read, and why


# --------------------------------------------------------------------------- pure tables
def counts_table(counts: dict[str, dict[str, int | None]]) -> pd.DataFrame:
    """One row per (store, what) with its count; unreachable stores show <NA>."""
    rows = [(store, what, n) for store in STORES for what, n in counts.get(store, {}).items()]
    df = pd.DataFrame(rows, columns=["store", "what", "count"])
    df["count"] = df["count"].astype("Int64")
    return df


def class_distribution(box_rows: Iterable[tuple[datetime, str]], freq: str = "D") -> pd.DataFrame:
    """Boxes per class per period (rows: period start, columns: class names, zeros filled)."""
    df = pd.DataFrame(list(box_rows), columns=["time", "class_name"])
    if df.empty:
        return pd.DataFrame(index=pd.DatetimeIndex([], name="period"))
    df["period"] = pd.to_datetime(df["time"]).dt.to_period(freq).dt.start_time
    table = df.pivot_table(index="period", columns="class_name", values="time", aggfunc="count", fill_value=0)
    table.columns.name = None
    return table.astype(int)


def model_versions_table(model_rows: Sequence[tuple]) -> pd.DataFrame:
    """Model versions by the transactions that used them, most used first."""
    df = pd.DataFrame(list(model_rows), columns=["model_version", "transactions", "first_used", "last_used"])
    return df.sort_values(["transactions", "model_version"], ascending=[False, True], ignore_index=True)


def ingest_throughput(ingest_rows: Sequence[tuple], latest: int = 10) -> pd.DataFrame:
    """Per ingest run: transactions, wall span and images/s (NaN for a single-image run)."""
    df = pd.DataFrame(list(ingest_rows), columns=["run_id", "transactions", "first", "last"])
    if df.empty:
        return df.assign(span_s=pd.Series(dtype=float), images_per_s=pd.Series(dtype=float))
    span = (pd.to_datetime(df["last"]) - pd.to_datetime(df["first"])).dt.total_seconds()
    df["span_s"] = span
    df["images_per_s"] = (df["transactions"] / span.where(span > 0)).round(2)
    return df.sort_values("last", ascending=False, ignore_index=True).head(latest)


def runs_table(runs: Sequence[RunSummary], latest: int = 20) -> pd.DataFrame:
    """The latest run records: DAG, task, logical date, status, duration and where the record is."""
    rows = [(r.dag_id, r.task, r.logical_date, "ok" if r.ok else "failed",
             round(r.duration_s, 1) if r.duration_s is not None else None, r.start_time, r.key) for r in runs]
    df = pd.DataFrame(rows, columns=["dag_id", "task", "logical_date", "status", "duration_s", "started", "record"])
    return df.head(latest)


def duration_stats(runs: Sequence[RunSummary]) -> pd.DataFrame:
    """Per (dag_id, task): runs, failures, median and last duration in seconds."""
    df = pd.DataFrame([(r.dag_id, r.task, r.ok, r.duration_s, r.logical_date) for r in runs],
                      columns=["dag_id", "task", "ok", "duration_s", "logical_date"])
    if df.empty:
        return pd.DataFrame(columns=["dag_id", "task", "runs", "failed", "median_s", "last_s"])
    df = df.sort_values("logical_date")
    g = df.groupby(["dag_id", "task"])
    out = pd.DataFrame({
        "runs": g.size(),
        "failed": g["ok"].apply(lambda s: int((~s).sum())),
        "median_s": g["duration_s"].median().round(1),
        "last_s": g["duration_s"].last().round(1),
    })
    return out.reset_index()


def undelivered_table(rows: Sequence[tuple]) -> pd.DataFrame:
    """Transactions whose DICOM SR did not reach the PACS (CXR_DICOM_RESULTS_DEST), newest first.

    Sending the image to ``cxr dicom listen`` again delivers its report again."""
    df = pd.DataFrame(list(rows), columns=["transaction_id", "time", "why"])
    return df.sort_values("transaction_id", ascending=False, ignore_index=True)


def plot_class_distribution(table: pd.DataFrame, ax: Axes | None = None) -> Axes:
    """Stacked bars of :func:`class_distribution`; returns the Axes."""
    if ax is None:
        _, ax = plt.subplots(figsize=(9, 3.5))
    if table.empty:
        ax.text(0.5, 0.5, "no predictions yet", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return ax
    labels = [pd.Timestamp(p).strftime("%Y-%m-%d") for p in table.index]
    bottom = None
    for name in table.columns:
        ax.bar(labels, table[name], bottom=bottom, label=name)
        bottom = table[name] if bottom is None else bottom + table[name]
    ax.set_ylabel("boxes")
    ax.set_title("Predicted boxes per class over time")
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.tick_params(axis="x", labelrotation=45)
    return ax


def coco_counts(instances_json: Path) -> dict[str, int]:
    """images / annotations / categories of a COCO ``instances.json``."""
    data = json.loads(Path(instances_json).read_text())
    return {k: len(data.get(k, [])) for k in ("images", "annotations", "categories")}


def latest_coco(mart_dir: Path) -> Path | None:
    """The newest ``annotations/instances.json`` at or under ``mart_dir`` (one level of exports)."""
    mart_dir = Path(mart_dir)
    found = list(mart_dir.glob("annotations/instances.json")) + list(mart_dir.glob("*/annotations/instances.json"))
    return max(found, key=lambda p: p.stat().st_mtime) if found else None


# --------------------------------------------------------------------------- gather (I/O)
def _db_part(stores: Stores, report: PipelineReport) -> None:
    try:
        with stores.engine.connect() as conn:
            report.counts["db"] = {
                "images": conn.scalar(select(func.count()).select_from(image)),
                "transactions": conn.scalar(select(func.count()).select_from(transaction)),
                "boxes": conn.scalar(select(func.count()).select_from(pred_bounding_box)),
            }
            report.box_rows.extend(
                (r.time, r.pred_class, r.pred_bbox_id) for r in conn.execute(
                    select(transaction.c.time, pred_bounding_box.c.pred_class, pred_bounding_box.c.pred_bbox_id)
                    .select_from(transaction.join(pred_bounding_box,
                                                  pred_bounding_box.c.transaction_id == transaction.c.transaction_id))))
            report.counts["people"] = {  # the DB's people tables (migration 0004)
                "users": conn.scalar(select(func.count()).select_from(app_user)),
                "reviews": conn.scalar(select(func.count()).select_from(review)),
                "audit events": conn.scalar(select(func.count()).select_from(audit_event)),
            }
            tv = transaction.c
            report.model_rows.extend(tuple(r) for r in conn.execute(
                select(tv.model_version, func.count(), func.min(tv.time), func.max(tv.time)).group_by(tv.model_version)))
            report.ingest_rows.extend(tuple(r) for r in conn.execute(
                select(tv.run_id, func.count(), func.min(tv.time), func.max(tv.time)).group_by(tv.run_id)))
            report.undelivered.extend(tuple(r) for r in conn.execute(
                select(tv.transaction_id, tv.time, tv.sr_error).where(tv.sr_status == "failed")
                .order_by(tv.transaction_id.desc()).limit(UNDELIVERED_SHOWN)))
    except SQLAlchemyError as exc:
        raise CxrError(f"{describe_error(exc)} (run `cxr db upgrade`?)") from None


def _backup_part(lake: Lake, report: PipelineReport) -> None:
    df = read_backup(lake)
    boxes = df.dropna(subset=["pred_bbox_id"]) if len(df) else df
    report.counts["lake_backup"] = {
        "images": int(df["image_id"].nunique()) if len(df) else 0,
        "transactions": int(df["transaction_id"].nunique()) if len(df) else 0,
        "boxes": int(boxes["pred_bbox_id"].nunique()) if len(df) else 0,
    }
    report.box_rows.extend(zip(boxes["time"], boxes["pred_class"], boxes["pred_bbox_id"]))


def _warehouse_part(stores: Stores, report: PipelineReport) -> None:
    database = stores.warehouse
    report.counts["warehouse"] = {"images": database[IMAGES_COLLECTION].count_documents({}),
                                  "watermark": get_watermark(database)}


def _mart_part(mart_dir: Path | None, lake: Lake, report: PipelineReport) -> None:
    counts: dict[str, int | None] = {"lake exports objects": sum(1 for _ in lake.list(layout.EXPORTS_PREFIX))}
    latest = latest_coco(mart_dir) if mart_dir else None
    if latest is not None:
        counts.update({f"latest export {k}": n for k, n in coco_counts(latest).items()})
    else:
        report.notes.append(f"mart: no COCO export under {mart_dir}")
    report.counts["mart"] = counts


def gather(settings: Settings | None = None, *, mart_dir: Path | None = None, latest_runs: int = 5) -> PipelineReport:
    """Read every store once. A store that fails is noted, not fatal."""
    stores = Stores.open(settings or get_settings())
    report = PipelineReport(counts={k: {} for k in STORES}, box_rows=[], model_rows=[], ingest_rows=[])
    lake = None
    try:
        lake = stores.lake
    except CxrError as exc:
        report.notes.append(f"lake: {exc}")
    parts: list[tuple[str, Callable[[], None]]] = [("db", lambda: _db_part(stores, report)),
                                                   ("warehouse", lambda: _warehouse_part(stores, report))]
    if lake is not None:
        parts += [("lake_backup", lambda: _backup_part(lake, report)),
                  ("mart", lambda: _mart_part(mart_dir, lake, report))]
    for name, part in parts:
        try:
            part()
        except (CxrError, OSError) as exc:
            report.notes.append(f"{name}: {exc}")
        except Exception as exc:  # noqa: BLE001 - a driver's own error: note it, keep the report
            report.notes.append(f"{name}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
    # DB and backup may both hold a box (backed up, not purged yet): count each box once.
    unique = {bbox_id: (t, c) for t, c, bbox_id in report.box_rows}
    report.box_rows = list(unique.values())
    if lake is not None:
        report.runs = read_run_summaries(lake, latest_per_task=latest_runs)
    stores.close()
    return report
