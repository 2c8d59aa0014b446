"""``cxr lake``: list the lake and sweep unreferenced objects."""

from __future__ import annotations

import typer

lake = typer.Typer(help="The lake (local directory or S3): list objects, sweep orphans.", no_args_is_help=True)


@lake.command("ls")
def ls(prefix: str = typer.Argument("", help="Key prefix, e.g. images/ or runs/.")) -> None:
    """List objects under PREFIX with their sizes."""
    from cxr.stores.lake import lake_from_settings

    n = 0
    for info in lake_from_settings().list(prefix):
        typer.echo(f"{info.size:>12}  {info.last_modified:%Y-%m-%d %H:%M}  {info.key}")
        n += 1
    typer.echo(f"{n} objects", err=True)


# `cxr lake gc` belongs to the ingest path (it sweeps what a crashed ingest left behind).
from cxr.cli.ingest_cmd import gc_command  # noqa: E402

lake.command("gc")(gc_command)


def register(root: typer.Typer) -> None:
    root.add_typer(lake, name="lake")
