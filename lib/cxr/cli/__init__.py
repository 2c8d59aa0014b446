"""The ``cxr`` command: one typer app, one module per concept under ``cxr.cli``.

Each module defines ``register(root)`` and adds its commands. Imports of the stages and
stores stay inside the command functions: that is the CLI's start-up time (``cxr --help``
would otherwise import pandas, Spark and pydicom), and it keeps torch off the serving path. Expected failures (:class:`cxr.errors.CxrError`) print one line and exit
with their code; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import importlib
import sys

import typer

from cxr.errors import ConfigError, CxrError, fail

app = typer.Typer(
    name="cxr",
    help="Chest X-ray abnormality detection carried through a data lake, a warehouse and a data mart.\n\n"
    "Configuration comes from CXR_* environment variables or .env (see `cxr config`).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

# Order = order in `cxr --help`.
_MODULES = (
    "cxr.cli.config_cmd",
    "cxr.cli.db_cmd",
    "cxr.cli.lake_cmd",
    "cxr.cli.services_cmd",
    "cxr.cli.model_cmd",
    "cxr.cli.ingest_cmd",
    "cxr.cli.dicom_cmd",
    "cxr.cli.backfill_cmd",
    "cxr.cli.dashboard_cmd",
    "cxr.cli.users_cmd",
    "cxr.cli.review_cmd",
    "cxr.cli.monitor_cmd",
    "cxr.cli.backup_cmd",
    "cxr.cli.warehouse_cmd",
    "cxr.cli.mart_cmd",
    "cxr.cli.notebook_cmd",
)


def _register_all() -> None:
    """Register every command module; a module that fails to import is an error, never a silent gap."""
    for name in _MODULES:
        importlib.import_module(name).register(app)


_register_all()


#: Packages of the `train` extra (`make train-env`), which the demo environment leaves out.
TRAINING_PACKAGES = frozenset({"torch", "torchvision", "pycocotools", "onnxscript"})


def main() -> None:
    try:
        app(standalone_mode=True)
    except CxrError as exc:
        fail(exc)
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] not in TRAINING_PACKAGES:
            raise
        fail(ConfigError(f"this command needs the training extras ({exc.name} is not installed): "
                         "run `make train-env`"))
    except KeyboardInterrupt:
        typer.echo("cxr: interrupted", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
