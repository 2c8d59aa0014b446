"""Run records: keys, papermill execution into the lake, the `cxr notebook` CLI."""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta, timezone

import pytest
from orch_helpers import outputs_text, write_notebook

from cxr.errors import CxrError, InputError
from cxr.stores.layout import format_logical_date, html_key, parse_record_key, record_key
from cxr.stores.runs import lake_object_uri, read_run_summaries, run_notebook, summarize_record


@pytest.mark.unit
@pytest.mark.parametrize("value, expected", [
    ("2024-01-01", "2024-01-01"),
    (date(2024, 1, 1), "2024-01-01"),
    (datetime(2024, 1, 1, tzinfo=timezone.utc), "2024-01-01"),
    ("2024-01-01T00:00:00+00:00", "2024-01-01"),
    (datetime(2024, 1, 1, 2, 0, tzinfo=timezone(timedelta(hours=2))), "2024-01-01"),  # midnight UTC
    ("2024-03-05T13:04:05Z", "2024-03-05T130405Z"),
    ("2024-03-05T130405Z", "2024-03-05T130405Z"),
])
def test_format_logical_date(value, expected):
    assert format_logical_date(value) == expected


@pytest.mark.unit
def test_record_key_and_back():
    key = record_key("cxr_backup_weekly", "2024-01-07", "backup_db_to_lake")
    assert key == "runs/cxr_backup_weekly/2024-01-07/backup_db_to_lake.ipynb"
    assert html_key(key) == "runs/cxr_backup_weekly/2024-01-07/backup_db_to_lake.html"
    assert parse_record_key(key) == ("cxr_backup_weekly", "2024-01-07", "backup_db_to_lake")
    assert parse_record_key(html_key(key)) is None
    assert parse_record_key("runs/x.ipynb") is None


@pytest.mark.unit
@pytest.mark.parametrize("dag_id, day, task", [
    ("../etc", "2024-01-01", "t"), ("d", "2024-01-01", "a/b"), ("", "2024-01-01", "t"),
    ("d", "yesterday", "t"), ("d", "2024-01-01", ".."),
])
def test_record_key_rejects_unsafe_parts(dag_id, day, task):
    with pytest.raises(InputError):
        record_key(dag_id, day, task)


@pytest.mark.unit
def test_lake_object_uri(tmp_path):
    key = "runs/d/2024-01-01/t.ipynb"
    assert lake_object_uri(tmp_path.as_uri(), key) == str(tmp_path / key)
    assert lake_object_uri("s3://bucket", key) == f"s3://bucket/{key}"
    assert lake_object_uri("s3://bucket/some/prefix/", key) == f"s3://bucket/some/prefix/{key}"
    with pytest.raises(CxrError):
        lake_object_uri("ftp://x", key)


@pytest.mark.unit
def test_summarize_record_reads_papermill_metadata():
    nb = {"metadata": {"papermill": {"start_time": "2024-01-01T00:00:01.5Z", "end_time": "2024-01-01T00:00:04Z",
                                     "duration": 2.5, "exception": None, "parameters": {"mode": "incremental"}}}}
    s = summarize_record("runs/d/2024-01-01/t.ipynb", nb)
    assert (s.dag_id, s.logical_date, s.task, s.duration_s, s.ok) == ("d", "2024-01-01", "t", 2.5, True)
    assert s.parameters == {"mode": "incremental"} and s.start_time.second == 1
    failed = summarize_record("runs/d/2024-01-01/t.ipynb", {"metadata": {"papermill": {"duration": 1, "exception": True}}})
    assert failed.ok is False


@pytest.mark.unit
def test_parse_parameters():
    from cxr.cli.notebook_cmd import parse_parameters

    assert parse_parameters(["-p", "n", "3", "--parameter", "before", "2024-01-01", "-p", "purge", "false",
                             "-p", "x", "null", "-p", "name", "a b"]) == {
        "n": 3, "before": "2024-01-01", "purge": False, "x": None, "name": "a b"}
    with pytest.raises(InputError):
        parse_parameters(["-p", "only-key"])
    with pytest.raises(InputError):
        parse_parameters(["--bogus"])


def test_run_notebook_stores_record_and_html(tmp_path, lake):
    nbdir = tmp_path / "notebooks"
    write_notebook(nbdir / "hello.ipynb", "n = 1\nlabel = 'x'", "print(f'hello {label} {n * 2}')")
    rec = run_notebook("hello", {"n": 21, "label": "world"}, lake=lake, dag_id="dag1", logical_date="2024-02-03",
                       task="greet", notebooks_dir=nbdir, cwd=tmp_path)
    assert rec.ok and rec.key == "runs/dag1/2024-02-03/greet.ipynb"
    nb = json.loads(lake.get(rec.key))
    assert nb["metadata"]["papermill"]["parameters"] == {"n": 21, "label": "world"}
    assert "hello world 42" in outputs_text(nb)
    html = lake.get(rec.html_key).decode()
    assert html.lstrip().lower().startswith("<!doctype html") and "hello world 42" in html
    [summary] = read_run_summaries(lake)
    assert (summary.dag_id, summary.task, summary.ok) == ("dag1", "greet", True)
    assert summary.duration_s is not None and summary.duration_s > 0


@pytest.mark.integration
def test_run_notebook_failure_keeps_the_record(tmp_path, local_lake):
    nbdir = tmp_path / "notebooks"
    write_notebook(nbdir / "boom.ipynb", "limit = 1", "assert limit < 0, 'limit must be negative'")
    rec = run_notebook("boom", {}, lake=local_lake, dag_id="d", logical_date="2024-01-01", task="boom",
                       notebooks_dir=nbdir)
    assert not rec.ok and "AssertionError" in rec.error and "limit must be negative" in rec.error
    assert local_lake.exists(rec.key) and local_lake.exists(rec.html_key)
    assert read_run_summaries(local_lake)[0].ok is False


@pytest.mark.unit
def test_run_notebook_rejects_unknown_notebook_and_parameter(tmp_path, local_lake):
    nbdir = tmp_path / "notebooks"
    write_notebook(nbdir / "hello.ipynb", "n = 1", "n")
    with pytest.raises(InputError, match="no notebook 'nope'.*known: hello"):
        run_notebook("nope", {}, lake=local_lake, dag_id="d", logical_date="2024-01-01", task="t", notebooks_dir=nbdir)
    with pytest.raises(InputError, match="no parameter m"):
        run_notebook("hello", {"m": 1}, lake=local_lake, dag_id="d", logical_date="2024-01-01", task="t",
                     notebooks_dir=nbdir)
    assert list(local_lake.list("runs/")) == []  # nothing half-written


@pytest.mark.integration
def test_cli_notebook_run_and_list(tmp_path, run_cxr):
    nbdir = tmp_path / "notebooks"
    write_notebook(nbdir / "hello.ipynb", "n = 1", "print('n is', n)")
    write_notebook(nbdir / "boom.ipynb", "n = 1", "raise ValueError('bad n')")
    ok = run_cxr("notebook", "run", "hello", "-p", "n", "5", "--logical-date", "2024-01-01", "--dag-id", "cli",
                 "--notebooks-dir", nbdir, "-q")
    assert ok.returncode == 0, ok.stderr
    record = tmp_path / "var" / "lake" / "runs" / "cli" / "2024-01-01" / "hello.ipynb"
    assert record.is_file() and record.with_suffix(".html").is_file()
    assert "n is 5" in outputs_text(json.loads(record.read_text()))

    bad = run_cxr("notebook", "run", "hello", "-p", "zz", "5", "--notebooks-dir", nbdir)
    assert bad.returncode == 3 and bad.stderr.startswith("cxr: error: notebook 'hello' has no parameter zz")
    assert "Traceback" not in bad.stderr
    failed = run_cxr("notebook", "run", "boom", "--notebooks-dir", nbdir, "-q", "--logical-date", "2024-01-01")
    assert failed.returncode == 1 and "ValueError: bad n" in failed.stderr and "Traceback" not in failed.stderr
    assert (tmp_path / "var" / "lake" / "runs" / "manual" / "2024-01-01" / "boom.ipynb").is_file()

    listing = run_cxr("notebook", "list", "--notebooks-dir", nbdir)
    assert listing.returncode == 0 and "hello: n=1" in listing.stdout
    records = run_cxr("notebook", "list", "--records")
    assert "FAILED" in records.stdout and "runs/cli/2024-01-01/hello.ipynb" in records.stdout
