"""The backfill's parts without Spark: the listing, one task's work on a real SQLite DB and lake with
the real model, a crash inside a task and the re-run, the report in the lake, the CLI's one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select

from cxr.backfill.job import plan_tasks, task_spec
from cxr.backfill.report import BackfillReport, list_runs, read_refusals, write_report
from cxr.backfill.source import open_source
from cxr.backfill.tasks import PartitionResult, Refusal, run_partition
from cxr.model.registry import resolve_model_dir
from cxr.stores.catalog import Stores
from cxr.stores.schema import image, transaction

pytestmark = pytest.mark.unit
MODELS = Path(__file__).resolve().parents[2] / "models"


def _spec(settings, source, run_id="backfill-test-1"):
    model_dir = resolve_model_dir(settings.models_dir, settings.model_name, settings.model_version)
    return task_spec(str(source), settings, run_id=run_id, score_thr=0.5, nms_thr=0.5, model_dir=model_dir,
                     threads=1, shipped=False)


def _count(engine, table) -> int:
    with engine.connect() as c:
        return int(c.execute(select(func.count()).select_from(table)).scalar_one())


def test_tasks_split_the_listing_and_share_the_cores():
    assert plan_tasks(2000, 25, 2, 2) == plan_tasks(2000, 25, 2, 2)
    p = plan_tasks(2000, 25, 2, 2)
    assert (p.tasks, p.threads) == (80, 1)
    assert plan_tasks(10, 25, 1, 2).tasks == 1 and plan_tasks(10, 25, 1, 2).threads == 2
    assert plan_tasks(0, 25, 2, 2).tasks == 0
    assert plan_tasks(26, 25, 8, 16).tasks == 2 and plan_tasks(26, 25, 8, 16).threads == 2


def test_a_folder_lists_image_files_and_skips_hidden_ones(export, make_settings):
    root, n_good, bad = export(4)
    files = open_source(str(root), make_settings()).list()
    names = sorted(f.location.rsplit("/", 1)[-1] for f in files)
    assert len(files) == n_good + len(bad)
    assert "skip.dcm" not in names and set(bad) <= set(names)
    assert all(f.size >= 0 for f in files)


def test_a_task_stores_refuses_with_reasons_and_a_rerun_skips_what_is_stored(export, sqlite_engine, local_lake,
                                                                            backfill_settings):
    root, n_good, bad = export(5)
    settings = backfill_settings(sqlite_engine, local_lake)
    stores = Stores.open(settings, engine=sqlite_engine, lake=local_lake)
    files = open_source(str(root), settings).list()
    seen: list[str] = []
    first = run_partition(files, _spec(settings, root), stores=stores, on_file=lambda f, s: seen.append(s))
    assert (first.files, first.stored, first.new_images, first.skipped) == (len(files), n_good, n_good, 0)
    assert sorted(r.location.rsplit("/", 1)[-1] for r in first.refused) == sorted(bad)
    reasons = {r.location.rsplit("/", 1)[-1]: r.reason for r in first.refused}
    assert "not a PNG, JPEG or DICOM" in reasons["notes.dcm"] and "empty" in reasons["empty.png"].lower()
    assert seen.count("stored") == n_good and seen.count("refused") == len(bad)
    with sqlite_engine.connect() as c:
        rows = c.execute(select(transaction.c.source, transaction.c.run_id)).all()
    assert rows and {r.source for r in rows} == {"backfill"} and {r.run_id for r in rows} == {"backfill-test-1"}
    assert len([k for k in local_lake.list("images/")]) == n_good

    again = run_partition(files, _spec(settings, root, "backfill-test-2"), stores=stores)
    assert (again.stored, again.new_images, again.skipped, len(again.refused)) == (0, 0, n_good, len(bad))
    assert again.decode_s == 0.0  # skipped before any decode
    assert _count(sqlite_engine, image) == n_good and _count(sqlite_engine, transaction) == n_good


def test_a_task_that_crashes_mid_store_is_finished_by_the_rerun_without_duplicates(export, sqlite_engine, local_lake,
                                                                                 backfill_settings, monkeypatch):
    from cxr.ingest import pipeline

    root, n_good, _bad = export(6)
    settings = backfill_settings(sqlite_engine, local_lake)
    stores = Stores.open(settings, engine=sqlite_engine, lake=local_lake)
    files = [f for f in open_source(str(root), settings).list() if f.location.endswith(("img000.dcm", "img001.dcm",
                                                                                         "img002.dcm", "img003.dcm"))]
    calls = {"n": 0}

    def crash_on_third(step: str) -> None:
        if step == "insert_transaction":
            calls["n"] += 1
            if calls["n"] == 3:
                raise RuntimeError("killed between the image row and its transaction")

    monkeypatch.setattr(pipeline, "checkpoint", crash_on_third)
    with pytest.raises(RuntimeError):
        run_partition(files, _spec(settings, root), stores=stores)
    assert _count(sqlite_engine, image) == 2  # the third file's DB transaction was rolled back whole
    monkeypatch.setattr(pipeline, "checkpoint", lambda step: None)
    rerun = run_partition(files, _spec(settings, root, "backfill-test-2"), stores=stores)
    assert (rerun.skipped, rerun.stored, rerun.new_images) == (2, 2, 2)
    assert _count(sqlite_engine, image) == 4 and _count(sqlite_engine, transaction) == 4


def test_the_report_goes_to_the_lake_and_lists(local_lake):
    res = PartitionResult(files=3, stored=2, new_images=2, refused=[Refusal("/x/notes.dcm", "not a DICOM file", 40)])
    report = BackfillReport(run_id="backfill-r1", source="/x", master="local[2]", partitions=1, total=3,
                            model_version="1.0.0", score_thr=0.5, nms_thr=0.5, result=res, seconds=2.0)
    write_report(local_lake, report)
    assert report.record_key == "backfill/backfill-r1/run.json"
    assert read_refusals(local_lake, "backfill-r1") == [{"location": "/x/notes.dcm", "reason": "not a DICOM file",
                                                          "bytes": 40}]
    empty = BackfillReport(run_id="backfill-r2", source="/x", master="local[1]", partitions=0, total=0,
                           model_version="1.0.0", score_thr=0.5, nms_thr=0.5)
    write_report(local_lake, empty)
    assert read_refusals(local_lake, "backfill-r2") == []
    runs = list_runs(local_lake)
    assert [r["run_id"] for r in runs] == ["backfill-r1", "backfill-r2"]
    assert runs[0]["stored"] == 2 and runs[0]["refused"] == 1 and runs[0]["rate_per_s"] == 1.5


@pytest.mark.parametrize(("args", "message"), [
    ((), "SOURCE is required"),
    (("ftp://host/x",), "SOURCE must be a folder or an s3:// prefix"),
    (("/no/such/folder",), "is not a folder"),
])
def test_the_cli_refuses_a_bad_source_in_one_line(run_cxr, args, message):
    res = run_cxr("backfill", *args, env={"CXR_MODELS_DIR": str(MODELS)})
    assert res.returncode == 3, res.stderr
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("cxr: error: ") and message in lines[0]
    assert "Traceback" not in res.stderr
