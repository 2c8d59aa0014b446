"""Run records: every executed stage notebook is kept in the lake.

A run of notebook ``notebooks/<name>.ipynb`` -- by Airflow's PapermillOperator or by
``cxr notebook run`` -- leaves its executed copy (parameters injected, outputs, papermill's
timing metadata) at ``runs/<dag_id>/<logical date>/<task>.ipynb`` and a readable HTML copy
beside it (``.html``).

The key and URI helpers at the top use the standard library only: the DAGs import them from
the Airflow environment, which does not have cxr's dependencies. Papermill, nbformat and
nbconvert are imported inside the functions that need them.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from pathlib import Path
from urllib.parse import unquote, urlsplit

from cxr.errors import CxrError, InputError

RUNS_PREFIX = "runs/"
KERNEL_NAME = "cxr"
#: dag ids, task ids and notebook names: what Airflow accepts, nothing that can climb a path.
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,249}$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}(T\d{6}Z)?$")


def check_name(value: str, what: str) -> str:
    """``value`` if it is a safe dag id / task id / notebook name, else :class:`InputError`."""
    if not _NAME.match(value or "") or ".." in value:
        raise InputError(f"invalid {what} {value!r}: use letters, digits, '_', '-' and '.'")
    return value


def format_logical_date(value: str | date | datetime) -> str:
    """The ``<logical date>`` part of a run key.

    A date, or a datetime at midnight UTC, gives ``YYYY-MM-DD`` (the daily and weekly DAGs);
    any other datetime gives ``YYYY-MM-DDTHHMMSSZ`` in UTC (manual runs). Strings are parsed
    as ISO 8601 first, so ``2024-01-01``, ``2024-01-01T00:00:00+00:00`` and the formatted
    value itself all work.
    """
    if isinstance(value, str):
        text = value.strip()
        if _DATE.match(text):
            return text
        try:
            value = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise InputError(f"invalid logical date {value!r}: use YYYY-MM-DD or an ISO 8601 datetime") from None
    if isinstance(value, datetime):
        utc = value.astimezone(timezone.utc) if value.tzinfo else value
        if (utc.hour, utc.minute, utc.second, utc.microsecond) == (0, 0, 0, 0):
            return utc.strftime("%Y-%m-%d")
        return utc.strftime("%Y-%m-%dT%H%M%SZ")
    if isinstance(value, date):
        return value.strftime("%Y-%m-%d")
    raise InputError(f"invalid logical date {value!r}")


def record_key(dag_id: str, logical_date: str | date | datetime, task: str, ext: str = "ipynb") -> str:
    """``runs/<dag_id>/<logical date>/<task>.<ext>``, every part checked."""
    return (
        f"{RUNS_PREFIX}{check_name(dag_id, 'dag id')}/{format_logical_date(logical_date)}/"
        f"{check_name(task, 'task id')}.{ext}"
    )


def html_key(ipynb_key: str) -> str:
    """The HTML copy's key beside a run record."""
    return ipynb_key.removesuffix(".ipynb") + ".html"


def parse_record_key(key: str) -> tuple[str, str, str] | None:
    """``(dag_id, logical_date, task)`` of a run-record key, or None for anything else."""
    parts = key.split("/")
    if len(parts) != 4 or parts[0] + "/" != RUNS_PREFIX or not parts[3].endswith(".ipynb"):
        return None
    return parts[1], parts[2], parts[3].removesuffix(".ipynb")


def lake_object_uri(lake_url: str, key: str) -> str:
    """Where papermill writes ``key`` of the lake at ``lake_url``.

    ``file:///dir`` gives a plain path (papermill writes local files itself); ``s3://bucket/prefix``
    gives ``s3://bucket/prefix/<key>`` (papermill's S3 handler, boto3's credential chain and
    ``AWS_ENDPOINT_URL_S3`` for an S3-compatible endpoint).
    """
    parts = urlsplit(lake_url)
    if parts.scheme == "file":
        return str(Path(unquote(parts.path)) / key)
    if parts.scheme == "s3":
        prefix = parts.path.strip("/")
        return f"s3://{parts.netloc}/{prefix + '/' if prefix else ''}{key}"
    raise CxrError(f"unknown lake scheme {parts.scheme!r}: use file:///dir or s3://bucket[/prefix]")


# --------------------------------------------------------------------------- notebooks
def notebook_html(nb, *, report_mode: bool = False) -> str:  # noqa: ANN001 - nbformat.NotebookNode
    """A standalone HTML page of an executed notebook; ``report_mode`` hides the code."""
    from nbconvert import HTMLExporter

    exporter = HTMLExporter(exclude_input=report_mode, exclude_input_prompt=True, exclude_output_prompt=True)
    body, _resources = exporter.from_notebook_node(nb)
    return body


def write_html_beside(output_nb: str, *, report_mode: bool = False) -> str:
    """Read the executed notebook at ``output_nb`` (path or s3:// URI), write ``.html`` beside it.

    Used by the Airflow operator after PapermillOperator has written the record; papermill's
    I/O layer reads and writes both local paths and s3:// URIs.
    """
    from papermill.iorw import load_notebook_node, papermill_io

    nb = load_notebook_node(output_nb)
    target = html_key(output_nb)
    papermill_io.write(notebook_html(nb, report_mode=report_mode), target, extensions=[".html"])
    return target


def list_notebooks(notebooks_dir: Path) -> list[str]:
    """Names (without ``.ipynb``) of the runnable notebooks in ``notebooks_dir``."""
    if not notebooks_dir.is_dir():
        return []
    return sorted(p.stem for p in notebooks_dir.glob("*.ipynb") if not p.name.startswith("."))


def notebook_parameters(path: Path) -> dict[str, str]:
    """The ``parameters`` cell of a notebook as {name: default source}, in order.

    Python's own parser reads the cell (papermill's line-based inspector gives up on comments
    with semicolons or parentheses); every top-level assignment is a parameter.
    """
    import ast
    import json

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


def coerce_parameter(value: str):  # noqa: ANN201 - a JSON scalar or the string
    """``-p key value`` values: JSON literals (numbers, true/false/null, lists) or plain strings.

    papermill's own CLI does the same with YAML; JSON keeps ``2024-01-01`` a string.
    """
    import json

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
    parameters: dict = field(default_factory=dict)


def run_notebook(name: str, parameters: dict, *, lake, dag_id: str, logical_date, task: str,  # noqa: ANN001
                 notebooks_dir: Path, cwd: Path | None = None, kernel_name: str = KERNEL_NAME,
                 report_mode: bool = False, progress: bool = False, log_output: bool = False,
                 execution_timeout: int | None = None) -> RunRecord:
    """Execute ``notebooks_dir/<name>.ipynb`` with papermill and store the record in ``lake``.

    The executed notebook is written to a temporary file, then put into the lake (atomic on
    both backends) with its HTML copy, also when a cell fails: a failed run is a record too.
    Returns the :class:`RunRecord`; ``ok`` is False and ``error`` one line when a cell raised.
    Unknown notebooks and parameters the notebook does not declare raise :class:`InputError`.
    """
    import tempfile

    import nbformat
    import papermill
    from papermill.exceptions import PapermillExecutionError

    check_name(name, "notebook name")
    source = notebooks_dir / f"{name}.ipynb"
    if not source.is_file():
        known = ", ".join(list_notebooks(notebooks_dir)) or "none"
        raise InputError(f"no notebook {name!r} in {notebooks_dir} (known: {known})")
    declared = notebook_parameters(source)
    unknown = sorted(set(parameters) - set(declared))
    if unknown:
        raise InputError(f"notebook {name!r} has no parameter {', '.join(unknown)} "
                         f"(parameters: {', '.join(declared) or 'none'})")
    key = record_key(dag_id, logical_date, task)
    # papermill re-reads the parameters cell line by line and warns about comments it cannot
    # parse; the cell was parsed above with Python's own parser, so those warnings are noise.
    logging.getLogger("papermill.translators").setLevel(logging.ERROR)
    error: str | None = None
    with tempfile.TemporaryDirectory(prefix="cxr-run-") as tmp:
        out = Path(tmp) / f"{task}.ipynb"
        started = time.perf_counter()
        try:
            papermill.execute_notebook(
                str(source), str(out), parameters=parameters, kernel_name=kernel_name,
                cwd=str(cwd) if cwd else None, progress_bar=progress, log_output=log_output,
                report_mode=report_mode, execution_timeout=execution_timeout,
            )
        except PapermillExecutionError as exc:
            error = f"cell {exc.exec_count}: {exc.ename}: {str(exc.evalue).splitlines()[0] if exc.evalue else ''}".rstrip(": ")
        except Exception as exc:  # kernel missing or died: jupyter_client raises plain errors
            if not out.exists():
                raise CxrError(f"cannot run notebook {name!r}: {type(exc).__name__}: {exc}".splitlines()[0]) from None
            error = f"{type(exc).__name__}: {exc}".splitlines()[0]
        duration = time.perf_counter() - started
        lake.put_file(key, out, content_type="application/x-ipynb+json")
        nb = nbformat.read(out, as_version=4)
        lake.put(html_key(key), notebook_html(nb, report_mode=report_mode).encode("utf-8"), content_type="text/html")
    return RunRecord(notebook=name, key=key, html_key=html_key(key), uri=lake.uri(key), duration_s=duration,
                     ok=error is None, error=error, parameters=dict(parameters))


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
    parameters: dict


def _parse_time(value) -> datetime | None:  # noqa: ANN001
    if not value:
        return None
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None


def summarize_record(key: str, nb: dict) -> RunSummary | None:
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


def read_run_summaries(lake, *, latest_per_task: int | None = None) -> list[RunSummary]:  # noqa: ANN001
    """Summaries of the run records in ``lake``, newest first (optionally the N latest per task)."""
    import json

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
