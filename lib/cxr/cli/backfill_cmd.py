"""``cxr backfill SOURCE``: ingest a PACS export (a folder or an s3:// prefix) on Spark; ``--runs`` lists runs."""

from __future__ import annotations

import json

import typer


def backfill(
    source: str = typer.Argument(None, help="A folder, or s3://bucket/prefix, of exported PNG/JPEG/DICOM files.",
                                 show_default=False),
    master: str = typer.Option(None, "--master", help="Spark master, e.g. local[2] (default: CXR_SPARK_MASTER).",
                               show_default=False),
    files_per_task: int = typer.Option(25, "--files-per-task", min=1, help="Files per Spark task (the unit of "
                                       "progress and of retry)."),
    run_id: str = typer.Option(None, "--run-id", help="Run id stored on each transaction (default: a new one). "
                               "Any re-run skips files already stored.", show_default=False),
    score_thr: float = typer.Option(None, "--score-thr", min=0.0, max=1.0, show_default=False,
                                    help="Confidence-score threshold (default: CXR_SCORE_THR)."),
    nms_thr: float = typer.Option(None, "--nms-thr", min=0.0, max=1.0, show_default=False,
                                  help="Class-wise NMS IoU threshold (default: CXR_NMS_THR)."),
    as_json: bool = typer.Option(False, "--json", help="Print the run record as JSON."),
    progress: bool = typer.Option(None, "--progress/--no-progress", help="Progress bar (default: on a terminal).",
                                  show_default=False),
    runs: bool = typer.Option(False, "--runs", help="List the finished backfill runs (from their run records) "
                              "instead of running one."),
) -> None:
    """Ingest at archive scale: every image under SOURCE through ingest's per-file path, on Spark.

    Each Spark task opens its own stores and predictor and runs decode, de-identification,
    detection and the atomic store for its files (source "backfill"). Files already stored
    (same upload) are skipped, so a killed or repeated backfill finishes the rest and duplicates
    nothing. A file that is not a usable image is refused with its reason into
    backfill/<run_id>/refusals.parquet in the lake; the run record is backfill/<run_id>/run.json.
    Exits 3 when any file was refused. The demo model is trained on synthetic images: not for
    clinical use.
    """
    from cxr.errors import InputError
    from cxr.stores import db
    from cxr.stores.catalog import Stores

    stores = Stores.open()
    if runs:
        from cxr.backfill.report import list_runs

        for r in list_runs(stores.lake):
            typer.echo(f"{r['run_id']}  {r['started_at']}  {r['files']:>9,} files  {r['stored']:>9,} stored  "
                       f"{r['skipped']:>9,} skipped  {r['refused']:>7,} refused  {r['rate_per_s']:.2f}/s  {r['master']}")
        return
    if not source:
        raise InputError("SOURCE is required (a folder or s3://bucket/prefix), or pass --runs")
    from cxr.backfill.job import run_backfill  # pyspark: only when a backfill runs

    with db.reading("storing"):
        report = run_backfill(source, stores=stores, master=master, files_per_task=files_per_task, run_id=run_id,
                              score_thr=score_thr, nms_thr=nms_thr, progress=progress)
    if as_json:
        typer.echo(json.dumps(report.as_dict(), indent=2, default=str))
    else:
        for r in report.result.refused[:20]:
            typer.echo(f"cxr: refused {r.location}: {r.reason}", err=True)
        if len(report.result.refused) > 20:
            typer.echo(f"cxr: ... and {len(report.result.refused) - 20:,} more in {report.refusals_key}", err=True)
        for line in report.lines():
            typer.echo(line)
    if report.result.refused:
        raise typer.Exit(3)


def register(root: typer.Typer) -> None:
    root.command("backfill")(backfill)
