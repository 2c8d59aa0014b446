"""`cxr lake gc`: sweep old objects no image row references; never referenced or young ones."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
from ingest_factory import FakePredictor, gradient, lake_keys, png_bytes

from cxr.errors import InputError
from cxr.ingest.decode import decode_upload
from cxr.ingest.gc import parse_age, sweep
from cxr.ingest.pipeline import store_prediction


def _orphan(lake, settings, seed: int):
    up = decode_upload("o.png", png_bytes((gradient() + seed).astype("uint8")), settings)
    lake.put(up.image_key, up.stored_bytes)
    lake.put(up.rendition_key, up.rendition_png)
    return up


def test_sweep_deletes_only_old_unreferenced_objects(stores, settings):
    engine, lake = stores
    kept = decode_upload("k.png", png_bytes(gradient()), settings)
    store_prediction(engine, lake, kept, FakePredictor().predict(kept.array), score_thr=0.5, nms_thr=0.5,
                     model_version="m", run_id="r")
    orphan = _orphan(lake, settings, 1)
    lake.put("backup/run=1/part-0.parquet", b"x")  # other prefixes are never swept
    lake.put("images/README.txt", b"not content-addressed")
    later = datetime.now(timezone.utc) + timedelta(days=2)

    assert sweep(engine, lake, timedelta(days=1)).deleted == []  # everything is young
    dry = sweep(engine, lake, timedelta(days=1), now=later, dry_run=True)
    assert sorted(dry.deleted) == sorted([orphan.image_key, orphan.rendition_key]) and dry.referenced == 2
    assert len(lake_keys(lake)) == 6
    done = sweep(engine, lake, timedelta(days=1), now=later)
    assert sorted(done.deleted) == sorted(dry.deleted)
    assert lake_keys(lake) == sorted([kept.image_key, kept.rendition_key, "backup/run=1/part-0.parquet",
                                      "images/README.txt"])


@pytest.mark.unit
@pytest.mark.parametrize(("text", "expected"), [("30m", timedelta(minutes=30)), ("24h", timedelta(hours=24)),
                                                ("7d", timedelta(days=7)), ("0s", timedelta(0)),
                                                ("1.5h", timedelta(minutes=90))])
def test_parse_age(text, expected):
    assert parse_age(text) == expected


@pytest.mark.unit
@pytest.mark.parametrize("text", ["", "7", "-1d", "1y", "abc"])
def test_parse_age_refuses_nonsense(text):
    with pytest.raises(InputError, match="--older-than"):
        parse_age(text)


@pytest.mark.unit
def test_gc_cli(run_cxr, make_settings):
    from cxr.stores.db import engine_from_settings, upgrade
    from cxr.stores.lake import lake_from_settings

    settings = make_settings()
    upgrade(engine_from_settings(settings))
    orphan = _orphan(lake_from_settings(settings), settings, 2)
    dry = run_cxr("lake", "gc", "--older-than", "0s", "--dry-run")
    assert dry.returncode == 0 and f"would delete {orphan.image_key}" in dry.stdout
    res = run_cxr("lake", "gc", "--older-than", "0s", "--json")
    assert res.returncode == 0, res.stderr
    report = json.loads(res.stdout)
    assert report["deleted"] == 2 and sorted(report["keys"]) == sorted([orphan.image_key, orphan.rendition_key])
    bad = run_cxr("lake", "gc", "--older-than", "soon")
    assert bad.returncode == 3 and bad.stderr.startswith("cxr: error: --older-than") and "Traceback" not in bad.stderr


@pytest.mark.unit
def test_objects_kept_by_the_backup_are_not_swept(sqlite_engine, local_lake, settings, monkeypatch):
    """After stage 3 purged an image's rows, its objects are still referenced by the backup parquet."""
    import pandas as pd

    import cxr.stores.backup_reader as restore

    kept = _orphan(local_lake, settings, 3)
    gone = _orphan(local_lake, settings, 4)
    monkeypatch.setattr(restore, "read_backup", lambda lake, settings=None, image_ids=None:
                        pd.DataFrame({"sha256": [kept.sha256, None]}))
    later = datetime.now(timezone.utc) + timedelta(days=2)
    report = sweep(sqlite_engine, local_lake, timedelta(days=1), now=later)
    assert sorted(report.deleted) == sorted([gone.image_key, gone.rendition_key]) and report.referenced == 2
