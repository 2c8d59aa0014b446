"""Run records: every executed stage notebook is kept in the lake, written by one function.

A run of notebook ``notebooks/<name>.ipynb`` -- by Airflow's PapermillOperator, by
``cxr notebook run`` or on the SSH host by ``cxr warehouse --via-ssh`` -- leaves its executed
copy (parameters injected, outputs, papermill's timing metadata) at the key
:func:`cxr.stores.layout.record_key` gives, ``runs/<dag_id>/<logical date>/<task>.ipynb``, and a
readable HTML copy beside it: :func:`write_record` is the one writer. :func:`remote_notebook_command`
is the one builder of the command an SSH host runs.

The module level uses the standard library only: the DAGs import it from the Airflow
environment, which has papermill, nbformat and nbconvert but none of cxr's own dependencies;
those three are imported inside the functions that need them.
"""

from __future__ import annotations

import ast
import json
import shlex
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from cxr.errors import CxrError, InputError
from cxr.stores.layout import RUNS_PREFIX, check_name, html_key, parse_record_key, record_key

if TYPE_CHECKING:
    from nbformat import NotebookNode

    from cxr.stores.lake import Lake

KERNEL_NAME = "cxr"
NOTEBOOK_TYPE = "application/x-ipynb+json"

#: ``put(key, data, content_type)``: how a record reaches the lake (``Lake.put``).
Put = Callable[[str, bytes, str], None]


def lake_object_uri(lake_url: str, key: str) -> str:
    """Where ``key`` of the lake at ``lake_url`` lives: a plain path for ``file://``, else ``s3://...``."""
    parts = urlsplit(lake_url)
    if parts.scheme == "file":
        return str(Path(unquote(parts.path)) / key)
    if parts.scheme == "s3":
        prefix = parts.path.strip("/")
        return f"s3://{parts.netloc}/{prefix + '/' if prefix else ''}{key}"
    raise CxrError(f"unknown lake scheme {parts.scheme!r}: use file:///dir or s3://bucket[/prefix]")


# --------------------------------------------------------------------------- notebooks
def notebook_html(nb: NotebookNode, *, report_mode: bool = False) -> str:
    """A standalone HTML page of an executed notebook; ``report_mode`` hides the code."""
    from nbconvert import HTMLExporter

    exporter = HTMLExporter(exclude_input=report_mode, exclude_input_prompt=True, exclude_output_prompt=True)
    body, _resources = exporter.from_notebook_node(nb)
    return body


def write_record(executed: Path, key: str, put: Put, *, report_mode: bool = False) -> None:
    """Store the executed notebook at ``executed`` as run record ``key``, with its HTML copy beside it.

    The one writer of run records: ``cxr notebook run``, the DAGs' operator and the remote run
    all call it. The notebook's bytes are stored as they are; a failed run is a record too.
    """
    import nbformat

    data = Path(executed).read_bytes()
    nb = nbformat.reads(data.decode("utf-8"), as_version=4)
    put(key, data, NOTEBOOK_TYPE)
    put(html_key(key), notebook_html(nb, report_mode=report_mode).encode("utf-8"), "text/html")


def list_notebooks(notebooks_dir: Path) -> list[str]:
    """Names (without ``.ipynb``) of the runnable notebooks in ``notebooks_dir``."""
    if not notebooks_dir.is_dir():
        return []
    return sorted(p.stem for p in notebooks_dir.glob("*.ipynb") if not p.name.startswith("."))


def notebook_parameters(path: Path) -> dict[str, str]:
    """The ``parameters`` cell of a notebook as {name: default source}, in order.

    Python's own parser reads the cell (papermill's line-based inspector gives up on comments
    with more than one '=' on a line); every top-level assignment is a parameter.
    """
    try:
        nb = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read notebook {path}: {exc}") from None
    for cell in nb.get("cells", []):
        if cell.get("cell_type") == "code" and "parameters" in (cell.get("metadata", {}).get("tags") or []):
            source = "".join(cell.get("source", ""))
            try:
                tree = ast.parse(source)
            except SyntaxError as exc:
                raise InputError(f"{path}: the parameters cell is not valid Python: {exc.msg}") from None
            out: dict[str, str] = {}
            for node in tree.body:
                targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
                for target in targets:
                    if isinstance(target, ast.Name) and node.value is not None:
                        out[target.id] = ast.get_source_segment(source, node.value) or ""
            return out
    return {}


def coerce_parameter(value: str) -> Any:
    """``-p key value`` values: JSON literals (numbers, true/false/null, lists) or plain strings.

    papermill's own CLI does the same with YAML; JSON keeps ``2024-01-01`` a string.
    """
    try:
        return json.loads(value)
    except ValueError:
        return value


@dataclass
class RunRecord:
    """What a ``cxr notebook run`` left in the lake."""

    notebook: str
    key: str
    html_key: str
    uri: str
    duration_s: float
    ok: bool
    error: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)


def check_parameters(source: Path, parameters: Mapping[str, Any]) -> None:
    """Refuse parameters the notebook's ``parameters`` cell does not declare (one line naming them)."""
    declared = notebook_parameters(source)
    unknown = sorted(set(parameters) - set(declared))
    if unknown:
        raise InputError(f"notebook {source.stem!r} has no parameter {', '.join(unknown)} "
                         f"(parameters: {', '.join(declared) or 'none'})")


def execute(source: Path, out: Path, parameters: Mapping[str, Any], *, kernel_name: str = KERNEL_NAME,
            cwd: Path | None = None, report_mode: bool = False, progress: bool = False, log_output: bool = False,
            execution_timeout: int | None = None) -> str | None:
    """Run ``source`` with papermill into ``out``; None when every cell ran, else one line naming the failure."""
    import papermill
    from papermill.exceptions import PapermillExecutionError

    try:
        papermill.execute_notebook(
            str(source), str(out), parameters=dict(parameters), kernel_name=kernel_name,
            cwd=str(cwd) if cwd else None, progress_bar=progress, log_output=log_output,
            report_mode=report_mode, execution_timeout=execution_timeout,
        )
    except PapermillExecutionError as exc:
        evalue = str(exc.evalue).splitlines()[0] if exc.evalue else ""
        return f"cell {exc.exec_count}: {exc.ename}: {evalue}".rstrip(": ")
    except Exception as exc:  # kernel missing or died: jupyter_client raises plain errors
        if not out.exists():
            raise CxrError(f"cannot run notebook {source.stem!r}: {type(exc).__name__}: {exc}".splitlines()[0]) from None
        return f"{type(exc).__name__}: {exc}".splitlines()[0]
    return None


def run_notebook(name: str, parameters: Mapping[str, Any], *, lake: Lake, dag_id: str,
                 logical_date: str | date | datetime, task: str, notebooks_dir: Path, cwd: Path | None = None,
                 kernel_name: str = KERNEL_NAME, report_mode: bool = False, progress: bool = False,
                 log_output: bool = False, execution_timeout: int | None = None,
                 output: Path | None = None) -> RunRecord:
    """Execute ``notebooks_dir/<name>.ipynb`` with papermill and store the record in ``lake``.

    The executed notebook is written to a temporary file, then stored by :func:`write_record`
    (atomic on both lake backends), also when a cell fails: a failed run is a record too.
    ``output`` also keeps a copy of the executed notebook there (the remote run fetches it).
    Returns the :class:`RunRecord`; ``ok`` is False and ``error`` one line when a cell raised.
    Unknown notebooks and parameters the notebook does not declare raise :class:`InputError`.
    """
    check_name(name, "notebook name")
    source = notebooks_dir / f"{name}.ipynb"
    if not source.is_file():
        known = ", ".join(list_notebooks(notebooks_dir)) or "none"
        raise InputError(f"no notebook {name!r} in {notebooks_dir} (known: {known})")
    check_parameters(source, parameters)
    key = record_key(dag_id, logical_date, task)
    with tempfile.TemporaryDirectory(prefix="cxr-run-") as tmp:
        out = Path(tmp) / f"{task}.ipynb"
        started = time.perf_counter()
        error = execute(source, out, parameters, kernel_name=kernel_name, cwd=cwd, report_mode=report_mode,
                        progress=progress, log_output=log_output, execution_timeout=execution_timeout)
        duration = time.perf_counter() - started
        write_record(out, key, lake.put, report_mode=report_mode)
        if output is not None:
            Path(output).parent.mkdir(parents=True, exist_ok=True)
            Path(output).write_bytes(out.read_bytes())
    return RunRecord(notebook=name, key=key, html_key=html_key(key), uri=lake.uri(key), duration_s=duration,
                     ok=error is None, error=error, parameters=dict(parameters))


def remote_notebook_command(notebook: str, parameters: Mapping[str, Any], *, python: str, dag_id: str,
                            logical_date: str, task: str, workdir: str, output: str | None = None) -> str:
    """The shell command an SSH host runs: ``cxr notebook run`` in its project checkout (the one builder).

    Used by ``cxr warehouse --via-ssh`` and by the warehouse DAG's SSH branch. The remote host
    stores the run record in the lake itself (its own ``CXR_*`` settings); ``output`` also leaves
    the executed notebook there for the caller to fetch. Parameters whose value is None are left
    out (the notebook's default applies).
    """
    args = [python, "-m", "cxr", "notebook", "run", notebook, "-q", "--dag-id", dag_id,
            "--logical-date", logical_date, "--task", task]
    if output is not None:
        args += ["--output", output]
    for key, value in parameters.items():
        if value is not None:
            args += ["-p", key, value if isinstance(value, str) else json.dumps(value)]
    return f"cd {shlex.quote(workdir)} && " + " ".join(shlex.quote(a) for a in args)


# --------------------------------------------------------------------------- reading records
@dataclass(frozen=True)
class RunSummary:
    """One run record as the report shows it (from papermill's notebook metadata)."""

    dag_id: str
    logical_date: str
    task: str
    key: str
    start_time: datetime | None
    end_time: datetime | None
    duration_s: float | None
    ok: bool
    parameters: dict[str, Any]


def _parse_time(value: object) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None


def summarize_record(key: str, nb: Mapping[str, Any]) -> RunSummary | None:
    """A :class:`RunSummary` from a record's key and its notebook JSON; None if not a record."""
    parsed = parse_record_key(key)
    if parsed is None:
        return None
    meta = (nb.get("metadata") or {}).get("papermill") or {}
    duration = meta.get("duration")
    return RunSummary(
        dag_id=parsed[0], logical_date=parsed[1], task=parsed[2], key=key,
        start_time=_parse_time(meta.get("start_time")), end_time=_parse_time(meta.get("end_time")),
        duration_s=float(duration) if duration is not None else None,
        ok=not meta.get("exception") and duration is not None,
        parameters=dict(meta.get("parameters") or {}),
    )


def read_run_summaries(lake: Lake, *, latest_per_task: int | None = None) -> list[RunSummary]:
    """Summaries of the run records in ``lake``, newest first (optionally the N latest per task)."""
    keys = [info.key for info in lake.list(RUNS_PREFIX) if parse_record_key(info.key)]
    keys.sort(key=lambda k: parse_record_key(k)[1], reverse=True)  # type: ignore[index]
    seen: dict[tuple[str, str], int] = {}
    out: list[RunSummary] = []
    for key in keys:
        dag_id, _, task = parse_record_key(key)  # type: ignore[misc]
        if latest_per_task is not None:
            if seen.get((dag_id, task), 0) >= latest_per_task:
                continue
            seen[(dag_id, task)] = seen.get((dag_id, task), 0) + 1
        try:
            summary = summarize_record(key, json.loads(lake.get(key)))
        except ValueError:  # a record being written, or not JSON: skip it, never fail the report
            continue
        if summary is not None:
            out.append(summary)
    return out
