"""``cxr notebook``: run a stage notebook with papermill and keep its run record in the lake."""

from __future__ import annotations

from pathlib import Path

import typer

from cxr.errors import InputError

notebook = typer.Typer(help="Stage notebooks: run one with papermill (record kept in the lake), list them.",
                       no_args_is_help=True)

_NOTEBOOKS_HELP = "Folder of the notebooks (default: ./notebooks, else the one beside the package's project)."


def _notebooks_dir(value: Path | None) -> Path:
    if value is not None:
        return value
    here = Path("notebooks")
    if here.is_dir():
        return here.resolve()
    return (Path(__file__).resolve().parents[3] / "notebooks").resolve()


def parse_parameters(args: list[str]) -> dict:
    """``-p KEY VALUE`` pairs (repeatable) from the extra arguments; anything else is an error."""
    from cxr.stores.runs import coerce_parameter

    out: dict = {}
    i = 0
    while i < len(args):
        flag = args[i]
        if flag not in ("-p", "--parameter"):
            raise InputError(f"unexpected argument {flag!r}; parameters are given as -p KEY VALUE")
        if i + 2 >= len(args):
            raise InputError(f"{flag} needs a KEY and a VALUE")
        out[args[i + 1]] = coerce_parameter(args[i + 2])
        i += 3
    return out


@notebook.command(
    "run",
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
)
def run(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="Notebook to run: notebooks/NAME.ipynb (see `cxr notebook list`)."),
    dag_id: str = typer.Option("manual", "--dag-id", help="First part of the record key runs/<dag_id>/<logical date>/<task>.ipynb."),
    logical_date: str = typer.Option("", "--logical-date", help="YYYY-MM-DD or ISO 8601 datetime; default: now (UTC)."),
    task: str = typer.Option("", "--task", help="Record name; default: the notebook's NAME."),
    notebooks_dir: Path = typer.Option(None, "--notebooks-dir", help=_NOTEBOOKS_HELP),
    timeout: int = typer.Option(0, "--timeout", min=0, help="Seconds one cell may run (0: no limit)."),
    report_mode: bool = typer.Option(False, "--report-mode", help="Hide code cells in the record, as Airflow's operator does."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
    output: Path = typer.Option(None, "--output", help="Also save the executed notebook here (besides the record in the lake)."),
) -> None:
    """Run notebooks/NAME.ipynb on the `cxr` kernel with parameters `-p KEY VALUE` (repeatable).

    The executed notebook and an HTML copy are stored in the lake at
    runs/<dag_id>/<logical date>/<task>.ipynb (.html). Values are JSON when they parse
    (numbers, true/false, null, lists), strings otherwise. Exit code 1 when a cell fails;
    the record is kept all the same.
    """
    from datetime import datetime, timezone

    from cxr.config import get_settings
    from cxr.errors import CxrError
    from cxr.stores.lake import lake_from_settings
    from cxr.stores.runs import run_notebook

    parameters = parse_parameters(list(ctx.args))
    settings = get_settings()
    lake = lake_from_settings(settings)
    record = run_notebook(
        name, parameters, lake=lake, dag_id=dag_id,
        logical_date=logical_date or datetime.now(timezone.utc).replace(microsecond=0),
        task=task or name, notebooks_dir=_notebooks_dir(notebooks_dir), cwd=Path.cwd(),
        report_mode=report_mode, progress=not quiet and _isatty(), execution_timeout=timeout or None, output=output,
    )
    typer.echo(f"record: {record.uri}")
    typer.echo(f"html:   {lake.uri(record.html_key)}")
    typer.echo(f"{name}: {'ok' if record.ok else 'failed'} in {record.duration_s:.1f} s")
    if not record.ok:
        raise CxrError(f"notebook {name!r} failed at {record.error}; see {lake.uri(record.html_key)}")


def _isatty() -> bool:
    import sys

    return sys.stderr.isatty()


@notebook.command("list")
def list_(
    notebooks_dir: Path = typer.Option(None, "--notebooks-dir", help=_NOTEBOOKS_HELP),
    records: bool = typer.Option(False, "--records", help="List the run records in the lake instead."),
) -> None:
    """List the notebooks and their parameters (or, with --records, the run records in the lake)."""
    if records:
        from cxr.stores.lake import lake_from_settings
        from cxr.stores.runs import read_run_summaries

        for s in read_run_summaries(lake_from_settings()):
            took = f"{s.duration_s:8.1f} s" if s.duration_s is not None else "       - "
            typer.echo(f"{'ok    ' if s.ok else 'FAILED'} {took}  {s.key}")
        return
    from cxr.stores.runs import list_notebooks, notebook_parameters

    folder = _notebooks_dir(notebooks_dir)
    names = list_notebooks(folder)
    if not names:
        raise InputError(f"no notebooks in {folder}")
    for name in names:
        params = notebook_parameters(folder / f"{name}.ipynb")
        typer.echo(f"{name}: {', '.join(f'{k}={v}' for k, v in params.items()) or '(no parameters)'}")


def register(root: typer.Typer) -> None:
    root.add_typer(notebook, name="notebook")
