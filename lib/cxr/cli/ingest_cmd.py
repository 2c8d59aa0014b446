"""``cxr predict`` (detect, store nothing) and ``cxr ingest`` (stage 2 for a batch)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

SCORE_HELP = "Confidence-score threshold (default: CXR_SCORE_THR, 0.5)."
NMS_HELP = "Class-wise NMS IoU threshold (default: CXR_NMS_THR, 0.5)."


def _thr(value: float | None, name: str) -> float | None:
    from cxr.errors import InputError

    if value is not None and not 0.0 <= value <= 1.0:
        raise InputError(f"{name} must be between 0 and 1, got {value}")
    return value


def predict(
    files: list[Path] = typer.Argument(..., help="PNG, JPEG or DICOM files.", show_default=False),
    score_thr: float = typer.Option(None, "--score-thr", help=SCORE_HELP, show_default=False),
    nms_thr: float = typer.Option(None, "--nms-thr", help=NMS_HELP, show_default=False),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document with every file's findings."),
) -> None:
    """Detect abnormalities in FILES and print the findings; nothing is stored.

    The demo model is trained on synthetic phantom images: not for clinical use.
    Exits 3 when any file was rejected (one line per file with the reason).
    """
    from cxr.config import get_settings
    from cxr.ingest.pipeline import iter_predictions
    from cxr.model.predict import load_predictor

    settings = get_settings()
    s_thr = _thr(score_thr, "--score-thr")
    n_thr = _thr(nms_thr, "--nms-thr")
    s_thr = settings.score_thr if s_thr is None else s_thr
    n_thr = settings.nms_thr if n_thr is None else n_thr
    predictor = load_predictor(settings)
    results, rejected = [], 0
    for p in iter_predictions(list(files), settings, predictor, score_thr=s_thr, nms_thr=n_thr):
        if p.detected is not None and p.detected.skip_reason:
            if not as_json:
                typer.echo(f"{p.display_path}: not run: {p.detected.skip_reason}")
            results.append({"path": p.display_path, "skipped": p.detected.skip_reason, "findings": []})
            continue
        if p.upload is None or p.detections is None:
            rejected += 1
            typer.echo(f"cxr: rejected {p.display_path}: {p.reason}", err=True)
            results.append({"path": p.display_path, "error": p.reason})
            continue
        upload, det, seconds = p.upload, p.detections, p.inference_s
        item = {"path": p.display_path, "width": upload.width, "height": upload.height,
                "format": upload.source_format, "inference_s": round(seconds, 4),
                "warnings": upload.warnings, "findings": det.records()}
        results.append(item)
        if not as_json:
            typer.echo(f"{p.display_path}: {len(det)} finding(s) in {seconds * 1000:.0f} ms")
            for w in upload.warnings:
                typer.echo(f"  warning: {w}")
            for r in item["findings"]:
                typer.echo(f"  {r['class_name']:<20} {r['score']:.3f}  "
                           f"[{r['x_min']:.0f}, {r['y_min']:.0f}, {r['x_max']:.0f}, {r['y_max']:.0f}]")
    if as_json:
        typer.echo(json.dumps({"model": predictor.model_name, "model_version": predictor.model_version,
                               "score_thr": s_thr, "nms_thr": n_thr, "note": "demo model trained on synthetic "
                               "images - not for clinical use", "results": results}, indent=2, default=float))
    if rejected:
        raise typer.Exit(3)

def ingest(
    paths: list[Path] = typer.Argument(..., help="Files, or directories searched for .png/.jpg/.jpeg/.dcm files.",
                                       show_default=False),
    score_thr: float = typer.Option(None, "--score-thr", help=SCORE_HELP, show_default=False),
    nms_thr: float = typer.Option(None, "--nms-thr", help=NMS_HELP, show_default=False),
    run_id: str = typer.Option(None, "--run-id", help="Batch id stored on each transaction; pass an interrupted "
                               "batch's id to resume it without duplicate transactions.", show_default=False),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON summary on stdout."),
    progress: bool = typer.Option(None, "--progress/--no-progress", help="Progress bar (default: on a terminal).",
                                  show_default=False),
) -> None:
    """Stage 2: detect, then store each image in the lake and its prediction in the DB.

    DICOM is de-identified first. The same bytes ingested twice share one image row.
    Prints one line per rejected file with the reason and exits 3 when any was rejected.
    """
    from cxr.ingest.pipeline import ingest_files
    from cxr.stores import db
    from cxr.stores.catalog import Stores

    stores = Stores.open()
    with db.reading("storing"):
        summary = ingest_files(
            paths, stores=stores, score_thr=_thr(score_thr, "--score-thr"), nms_thr=_thr(nms_thr, "--nms-thr"),
            run_id=run_id, progress=progress,
            on_reject=lambda r: typer.echo(f"cxr: rejected {r.path}: {r.reason}", err=True),
        )
    if as_json:
        typer.echo(json.dumps(summary.as_dict(), indent=2, default=str))
    else:
        for w in summary.warnings:
            typer.echo(f"cxr: warning {w['path']}: {w['warning']}", err=True)
        new = sum(1 for s in summary.stored if s["created_image"])
        typer.echo(f"stored {len(summary.stored)} prediction(s) ({new} new image(s)), "
                   f"rejected {len(summary.rejected)}; run_id {summary.run_id}; {summary.seconds:.1f} s")
    if summary.rejected:
        raise typer.Exit(3)


def gc_command(
    older_than: str = typer.Option("24h", "--older-than", help="Only objects older than this: e.g. 30m, 24h, 7d."),
    dry_run: bool = typer.Option(False, "--dry-run", help="List what would be deleted; delete nothing."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON report."),
) -> None:
    """Delete images/, renditions/ and sr/ objects whose image no image row (or backup) references.

    Such objects are left by an ingest that crashed between the lake put and the DB commit.
    """
    from cxr.ingest.gc import parse_age, sweep
    from cxr.stores import db
    from cxr.stores.catalog import Stores

    age = parse_age(older_than)
    stores = Stores.open()
    with db.reading():
        report = sweep(stores.engine, stores.lake, age, dry_run=dry_run)
    if as_json:
        typer.echo(json.dumps(report.as_dict(), indent=2))
        return
    for key in report.deleted:
        typer.echo(("would delete " if dry_run else "deleted ") + key)
    typer.echo(f"scanned {report.scanned} object(s), {report.old_enough} older than {older_than}, "
               f"{report.referenced} referenced, {len(report.deleted)} {'to delete' if dry_run else 'deleted'}",
               err=True)


def register(root: typer.Typer) -> None:
    root.command("predict")(predict)
    root.command("ingest")(ingest)
