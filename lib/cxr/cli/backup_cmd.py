"""``cxr backup``: move DB history to parquet in the lake (local Spark), verify, purge; restore."""

from __future__ import annotations

import typer

backup = typer.Typer(
    help="Stage 3: copy transactions older than --before (default: now - CXR_RETENTION_DAYS) with their images "
    "and boxes to parquet under the lake's backup/ (local Spark), verify the copy, and with --purge delete them "
    "from the DB. Subcommands: restore, runs.",
    invoke_without_command=True,
)


@backup.callback()
def run(
    ctx: typer.Context,
    before: str = typer.Option(None, "--before", help="Back up transactions older than this UTC date/time "
                               "(YYYY-MM-DD or ISO). Default: now minus CXR_RETENTION_DAYS."),
    purge: bool = typer.Option(False, "--purge", help="After the lake copy is verified, delete the backed-up boxes, "
                               "transactions and unreferenced images from the DB (one DB transaction)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Only report what would be backed up and purged; "
                                 "write and delete nothing (no Spark)."),
    force: bool = typer.Option(False, "--force", help="Purge even transactions the warehouse has not loaded yet "
                               "(above its watermark)."),
    layout: str = typer.Option("month", "--layout", help="Parquet partitioning: month (year/month, default), "
                               "week (ISO year/week) or image_id (the seed's one directory per image)."),
) -> None:
    """Back up (and optionally purge) the DB history; see `cxr backup --help`."""
    if ctx.invoked_subcommand is not None:
        return
    from cxr.backup.job import run_backup
    from cxr.errors import CxrError

    try:
        report = run_backup(before=before, purge_db=purge, dry_run=dry_run, force=force, layout=layout)
    except CxrError as exc:  # e.g. the purge refused after a verified write: show what was done first
        partial = getattr(exc, "report", None)
        for line in partial.lines() if partial is not None else ():
            typer.echo(line)
        raise
    for line in report.lines():
        typer.echo(line)
    if purge and not dry_run and report.purged is None and report.manifest is None and not report.pending_runs:
        typer.echo("nothing to purge")


@backup.command("restore")
def restore(
    image_ids: list[int] = typer.Argument(..., help="image_id values to read back from the backup parquet."),
    out: str = typer.Option(None, "--out", help="Write the rows to this .csv or .parquet file instead of printing them."),
) -> None:
    """Read the backed-up rows of IMAGE_ID... back from the lake (pyarrow; no Spark)."""
    from pathlib import Path

    from cxr.errors import InputError
    from cxr.stores.backup_reader import read_backup
    from cxr.stores.lake import lake_from_settings

    frame = read_backup(lake_from_settings(), image_ids=image_ids)
    missing = sorted(set(image_ids) - {int(i) for i in frame["image_id"]})
    if out:
        path = Path(out)
        if path.suffix not in (".csv", ".parquet"):
            raise InputError(f"--out: use a .csv or .parquet file name, not {path.name!r}")
        frame.to_csv(path, index=False) if path.suffix == ".csv" else frame.to_parquet(path, index=False)
        typer.echo(f"wrote {len(frame)} rows to {path}")
    else:
        import pandas as pd

        with pd.option_context("display.max_columns", None, "display.width", 200):
            typer.echo(frame.to_string(index=False) if len(frame) else "(no rows)")
    typer.echo(f"{len(frame)} rows, {frame['transaction_id'].nunique()} transactions, "
               f"{frame['image_id'].nunique()} images", err=True)
    if missing:
        raise InputError(f"not in any committed backup: image_id {', '.join(map(str, missing))}")


@backup.command("runs")
def runs() -> None:
    """List the backup runs in the lake: committed or incomplete, purged or pending."""
    from cxr.stores.backup_reader import list_manifests
    from cxr.stores.lake import lake_from_settings

    manifests, success, purged = list_manifests(lake_from_settings())
    for m in manifests:
        state = "purged" if m.run_id in purged else "pending-purge" if m.run_id in success else "incomplete"
        s = m.summary
        typer.echo(f"{m.run_id}  {m.layout:<8} {state:<13} before {m.before[:19]}  {s['rows']} rows  "
                   f"{s['transactions']} transactions  {len(m.files)} files")
    typer.echo(f"{len(manifests)} runs", err=True)


def register(root: typer.Typer) -> None:
    root.add_typer(backup, name="backup")
