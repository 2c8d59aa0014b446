"""Crash injection at each step of the store sequence: nothing half-written, a re-run completes, gc sweeps."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from datetime import datetime, timedelta, timezone

import pytest
from ingest_factory import count_rows, gradient, lake_keys, png_bytes

from cxr.ingest import pipeline
from cxr.ingest.decode import decode_upload
from cxr.ingest.gc import sweep


class SimulatedCrash(BaseException):
    """Not an Exception: nothing in the store path may swallow it."""


def _crash_at(step):
    def checkpoint(current):
        if current == step:
            raise SimulatedCrash(step)
    return checkpoint


@pytest.mark.parametrize("step", pipeline.STEPS)
def test_crash_then_rerun_completes(stores, settings, fake_predictor, monkeypatch, step):
    engine, lake = stores
    up = decode_upload("a.png", png_bytes(gradient()), settings)
    det = fake_predictor.predict(up.array)
    kwargs = dict(score_thr=0.5, nms_thr=0.5, model_version="test-0", run_id="run-1", resume=True)

    monkeypatch.setattr(pipeline, "checkpoint", _crash_at(step))
    with pytest.raises(SimulatedCrash):
        pipeline.store_prediction(engine, lake, up, det, **kwargs)
    # nothing half-written: no row at all (the DB transaction is all or nothing), at most orphan objects
    assert count_rows(engine) == {"image": 0, "transaction": 0, "pred_bounding_box": 0}
    orphans = lake_keys(lake)
    assert set(orphans) <= {up.image_key, up.rendition_key}
    assert len(orphans) == pipeline.STEPS.index(step) if step in ("put_image", "put_rendition") else len(orphans) == 2

    # gc sweeps the orphans once they are old enough, and not before
    assert sweep(engine, lake, timedelta(hours=1)).deleted == []
    later = datetime.now(timezone.utc) + timedelta(hours=2)
    assert sorted(sweep(engine, lake, timedelta(hours=1), now=later).deleted) == orphans

    monkeypatch.setattr(pipeline, "checkpoint", lambda _s: None)
    res = pipeline.store_prediction(engine, lake, up, det, **kwargs)
    again = pipeline.store_prediction(engine, lake, up, det, **kwargs)  # a second re-run changes nothing
    assert res.transaction_id == again.transaction_id
    assert count_rows(engine) == {"image": 1, "transaction": 1, "pred_bounding_box": len(det)}
    assert lake_keys(lake) == sorted([up.image_key, up.rendition_key])
    # gc leaves referenced objects alone, however old
    assert sweep(engine, lake, timedelta(hours=1), now=later).deleted == []


@pytest.mark.integration
def test_killed_process_mid_transaction_leaves_no_rows(mariadb_engine, local_lake, settings, tmp_path):
    """A real crash: the ingesting process dies (os._exit) after inserting the transaction row."""
    url = mariadb_engine.url.render_as_string(hide_password=False)
    script = textwrap.dedent(f"""
        import os, sys
        sys.path.insert(0, {str(tmp_path.parent)!r})
        from cxr.config import load_settings
        from cxr.ingest import pipeline
        from cxr.ingest.decode import decode_upload
        from cxr.stores.db import make_engine
        from cxr.stores.lake import LocalLake
        sys.path.insert(0, {str(__import__("pathlib").Path(__file__).parent)!r})
        from ingest_factory import FakePredictor, gradient, png_bytes
        s = load_settings(data_dir={str(settings.data_dir)!r})
        up = decode_upload("a.png", png_bytes(gradient()), s)
        det = FakePredictor().predict(up.array)
        def die(step):
            if step == sys.argv[1]:
                os._exit(9)
        pipeline.checkpoint = die
        pipeline.store_prediction(make_engine({url!r}), LocalLake({str(local_lake.root)!r}), up, det,
                                  score_thr=0.5, nms_thr=0.5, model_version="m", run_id="r", resume=True)
    """)
    for step in ("insert_boxes", "commit"):
        proc = subprocess.run([sys.executable, "-c", script, step], capture_output=True, text=True, timeout=120)
        assert proc.returncode == 9, proc.stderr
        assert count_rows(mariadb_engine) == {"image": 0, "transaction": 0, "pred_bounding_box": 0}
    proc = subprocess.run([sys.executable, "-c", script, "none"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert count_rows(mariadb_engine) == {"image": 1, "transaction": 1, "pred_bounding_box": 2}
    assert len(lake_keys(local_lake)) == 2
