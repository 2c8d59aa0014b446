"""``cxr config``: show the settings in force (secrets masked)."""

from __future__ import annotations

import json

import typer


def register(root: typer.Typer) -> None:
    @root.command("config")
    def config(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
        """Show the settings in force, from CXR_* env and .env, with passwords masked."""
        from cxr.config import get_settings

        values = get_settings().redacted()
        if as_json:
            typer.echo(json.dumps(values, default=str, indent=2))
            return
        for name, value in values.items():
            typer.echo(f"CXR_{name.upper()}={'' if value is None else value}")
