"""``cxr services``: real local servers (MariaDB, S3 endpoint, SecantusDB, sshd) for dev and tests."""

from __future__ import annotations

from types import ModuleType

import typer

from cxr.errors import ConfigError

services = typer.Typer(
    help="Local servers on loopback standing in for AWS: MariaDB (RDS), moto S3, SecantusDB (DocumentDB), "
    "sshd (bastion); optionally Orthanc (a PACS) and cxr's DICOM listener. Data under <data_dir>/services/.",
    no_args_is_help=True,
)


def _harness() -> ModuleType:
    """The development harness (``cxr.devtools``), which a wheel install leaves out."""
    try:
        from cxr.devtools import services as svc
    except ModuleNotFoundError:
        raise ConfigError("`cxr services` is a development command: it needs a source checkout "
                          "(`make setup`), not the installed wheel") from None
    return svc


@services.command("up")
def up(extras: list[str] = typer.Argument(None, help="Optional services to start as well: orthanc (the PACS, "
                                          "Debian's Orthanc), dicom (`cxr dicom listen` on these servers).",
                                          show_default=False)) -> None:
    """Start the servers that are not running (idempotent) and write <data_dir>/services/services.env.

    `cxr services up orthanc dicom` also starts Orthanc (forwarding new CR/DX images to cxr) and the
    DICOM listener (storing into the local MariaDB and S3, reporting back to Orthanc).
    """
    svc = _harness()
    svc.up(echo=typer.echo, extras=tuple(extras or ()))
    typer.echo(f"env: {svc.env_file()}")
    typer.echo(f"use: set -a; . {svc.env_file()}; set +a")


@services.command("down")
def down() -> None:
    """Stop the servers `cxr services up` started (by their recorded PIDs)."""
    svc = _harness()
    stopped = svc.down()
    typer.echo(f"stopped: {', '.join(stopped) if stopped else 'nothing was running'}")


@services.command("status")
def status(check: bool = typer.Option(False, "--check", help="Exit with status 1 unless every server is up.")) -> None:
    """List each server as up or down with its address and PID."""
    svc = _harness()
    states = svc.status()
    for st in states:
        typer.echo(f"{st.name:<10} {'up' if st.up else 'down':<5} {st.address:<16} {st.detail}")
    path = svc.env_file()
    typer.echo(f"env: {path if path.exists() else 'not written (run `cxr services up`)'}")
    if check and not (all(st.up for st in states) and path.exists()):
        raise typer.Exit(1)


@services.command("check")
def check() -> None:
    """Open each configured store (CXR_DB_URL, CXR_LAKE_URL, CXR_WAREHOUSE_URL, and CXR_SSH_HOST when set)
    and say ok; a bad setting stops with one line naming it (exit 2)."""
    from cxr.config import get_settings
    from cxr.stores import db as dbstore
    from cxr.stores.lake import lake_from_settings
    from cxr.stores.warehouse import database_from_settings

    s = get_settings()
    engine = dbstore.engine_from_settings(s)
    dbstore.check_connection(engine)
    typer.echo(f"db: ok {dbstore.redact(str(engine.url))}")
    typer.echo(f"lake: ok {lake_from_settings(s).url}")
    database = database_from_settings(s)
    typer.echo(f"warehouse: ok database {database.name!r}")
    if s.ssh_host:
        from cxr.stores.remote import SSHTarget, run_remote

        target = SSHTarget.from_settings(s)
        run_remote(target, "true", check=True)
        typer.echo(f"ssh: ok {target}")


def register(root: typer.Typer) -> None:
    root.add_typer(services, name="services")
