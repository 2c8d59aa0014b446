"""``cxr mart``: export the warehouse's predictions as a COCO dataset (stage 5, the data mart)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def register(root: typer.Typer) -> None:
    root.command("mart", no_args_is_help=True)(mart)
    root.command("mart-tunnel")(mart_tunnel)


def mart(
    out_dir: Path = typer.Argument(..., help="Directory for images/, annotations/instances*.json and README.md (created; an interrupted export there resumes)."),
    since: Optional[str] = typer.Option(None, help="Only transactions at or after this UTC date/time (ISO, e.g. 2024-01-31 or 2024-01-31T12:00)."),
    until: Optional[str] = typer.Option(None, help="Only transactions before this UTC date/time (exclusive)."),
    min_score: float = typer.Option(0.0, min=0.0, max=1.0, help="Keep boxes with at least this score."),
    classes: Optional[str] = typer.Option(None, help="Comma-separated class names to keep (default: all the model's classes)."),
    model_version: Optional[str] = typer.Option(None, help="Only transactions made by this model version."),
    latest: bool = typer.Option(True, "--latest/--all-transactions", help="Newest matching transaction per image, or every matching transaction (one COCO image each)."),
    skip_empty: bool = typer.Option(False, "--skip-empty", help="Leave out transactions with no box left after the filters (kept by default as negatives)."),
    val_fraction: float = typer.Option(0.2, min=0.0, max=0.99, help="Share of patients (of images without a patient key) in the validation split, by a keyed hash; no patient in both splits, stable across exports."),
    labels: Optional[str] = typer.Option(None, "--labels", help="reviewed (radiologists' final boxes, each image's newest review), predicted (the detector's) or both, each annotation with its provenance. Default: reviewed when any review exists, else predicted."),
    workers: int = typer.Option(16, min=1, max=256, help="Concurrent downloads from the lake."),
    retries: int = typer.Option(3, min=0, max=20, help="Retries per failed download before it is reported."),
    via_tunnel: Optional[bool] = typer.Option(None, "--via-tunnel/--no-tunnel", help="Reach the warehouse through the SSH tunnel (CXR_SSH_*). Default: when CXR_SSH_HOST is set."),
    progress: Optional[bool] = typer.Option(None, "--progress/--no-progress", help="Show a progress bar (default: when stderr is a terminal)."),
) -> None:
    """Export the warehouse's labels and the lake's PNG renditions as a COCO dataset in OUT_DIR.

    Reviewed labels are radiologists' boxes; predicted ones are the model's (pseudo-labels, not
    ground truth). The export is recorded in the audit trail. Fails, writing no annotation file,
    when an image cannot be fetched; run it again to resume without re-downloading.
    """
    from cxr.config import get_settings
    from cxr.mart.export import export_mart
    from cxr.mart.filters import MartFilters
    from cxr.stores.db import engine_from_settings

    f = MartFilters(since=since, until=until, min_score=min_score,  # type: ignore[arg-type] - MartFilters parses strings
                    classes=classes, model_version=model_version,
                    latest=latest, include_empty=not skip_empty, val_fraction=val_fraction, labels=labels)
    settings = get_settings()
    result = export_mart(out_dir, f, settings=settings, workers=workers, retries=retries,
                         progress=progress, via_tunnel=via_tunnel, engine=engine_from_settings(settings))
    typer.echo(result.summary())


def mart_tunnel(
    url_file: Path = typer.Option(..., "--url-file", help="Write the tunneled mongodb:// URL (with directConnection=true) here once the tunnel is up."),
) -> None:
    """Hold an SSH tunnel (CXR_SSH_*, host key verified) to the warehouse open until stopped.

    For tools of your own (mongosh, a notebook) that need the warehouse on premises: the tunneled
    mongodb:// URL (with directConnection=true) is written to --url-file. `cxr mart` and
    scripts/batch_load_mart.sh open the same tunnel themselves when CXR_SSH_HOST is set.
    """
    import os
    import signal
    import threading
    from urllib.parse import urlsplit

    from cxr.config import get_settings
    from cxr.errors import ConfigError
    from cxr.stores.warehouse import warehouse_tunnel

    s = get_settings()
    if not s.ssh_host:
        raise ConfigError("no SSH host to tunnel through", setting="CXR_SSH_HOST")
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda *_: stop.set())
    with warehouse_tunnel(s) as url:
        tmp = url_file.with_name(url_file.name + ".tmp")
        tmp.unlink(missing_ok=True)
        with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w", encoding="utf-8") as fh:
            fh.write(url + "\n")  # may hold the warehouse password: owner-only
        tmp.replace(url_file)
        typer.echo(f"tunnel up: 127.0.0.1:{urlsplit(url).port} -> warehouse via {s.ssh_host}:{s.ssh_port}", err=True)
        stop.wait()
    url_file.unlink(missing_ok=True)
