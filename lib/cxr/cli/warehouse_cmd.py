"""``cxr warehouse``: stage 4, the DB's transactions into one warehouse document per image."""

from __future__ import annotations

from pathlib import Path

import typer


def warehouse(
    rebuild: bool = typer.Option(False, "--rebuild", help="Rebuild every document from the backup parquet in the "
                                 "lake plus the live DB (history purged from the DB included), then swap it in."),
    batch_size: int = typer.Option(None, "--batch-size", min=1, max=100_000,
                                   help="Documents per bulk_write (default: CXR_WAREHOUSE_BATCH_SIZE)."),
    via_ssh: str = typer.Option(None, "--via-ssh", metavar="USER@HOST[:PORT]",
                                help="Run notebooks/warehouse_etl.ipynb on this host instead (`cxr notebook run` in its "
                                "checkout CXR_SSH_REMOTE_WORKDIR with CXR_SSH_REMOTE_PYTHON); the host key must be in "
                                "CXR_SSH_KNOWN_HOSTS, the key is CXR_SSH_KEY_FILE. The executed notebook comes back "
                                "as the run record in the lake (runs/manual/<time>/warehouse_etl.ipynb)."),
    remote_env_file: str = typer.Option(None, "--remote-env-file", help="With --via-ssh: the settings file the "
                                        "remote run reads (a path on that host; default: .env in its checkout)."),
    output: Path = typer.Option(None, "--output", help="With --via-ssh: also save the executed notebook here."),
    progress: bool = typer.Option(None, "--progress/--no-progress", help="Progress bar (default: when stderr is a terminal)."),
) -> None:
    """Load new transactions into the warehouse (one document per image), above the watermark.

    Incremental and idempotent: re-runs and concurrent runs never duplicate a document or a
    transaction. The watermark (highest transaction_id loaded) is kept in the etl_state collection;
    `cxr backup --purge` refuses to delete transactions above it.
    """
    import sys

    from cxr.config import get_settings

    mode = "rebuild" if rebuild else "incremental"
    settings = get_settings()
    if via_ssh:
        from cxr.warehouse.remote_run import run_via_ssh

        def echo(line: str) -> None:
            typer.echo(line, err=True)

        show = sys.stderr.isatty() if progress is None else progress
        run = run_via_ssh(via_ssh, settings, mode=mode, batch_size=batch_size, remote_env_file=remote_env_file,
                          output=output, on_line=echo if show else None)
        typer.echo(f"remote {mode} on {run.target}: ok")
        typer.echo(f"record: {run.record_uri}")
        typer.echo(f"html:   {run.html_uri}")
        if run.local_copy is not None:
            typer.echo(f"copy:   {run.local_copy}")
        return
    if remote_env_file or output:
        from cxr.errors import InputError

        raise InputError("--remote-env-file and --output only apply with --via-ssh")
    from cxr.stores.catalog import Stores
    from cxr.warehouse.etl import run

    report = run(mode, stores=Stores.open(settings), batch_size=batch_size, progress=progress)
    for line in report.lines():
        typer.echo(line)


def register(root: typer.Typer) -> None:
    root.command("warehouse")(warehouse)
