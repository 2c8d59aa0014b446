"""Smoke test of `make demo`'s pipeline part (scripts/demo.sh with DEMO_NO_SERVE=1), small and in tmp."""

from __future__ import annotations

import json
import os
import subprocess
from datetime import datetime, timezone

import pytest
from orch_helpers import REPO, outputs_text

pytestmark = pytest.mark.e2e


# The demo runs without the training extras (pycocotools is in the demo's `app` extra, for the
# monitor's mAP). This .venv has them (make test), so the demo's
# processes -- the CLI and every notebook kernel -- get a sitecustomize that makes them absent:
# None in sys.modules fails `import torch` (ModuleNotFoundError) and gives find_spec None, exactly
# as in the demo's own .venv.
BLOCKER = """
import sys
for _name in ("torch", "torchvision", "onnxscript"):
    sys.modules[_name] = None
"""


def test_demo_pipeline_runs_every_stage_and_keeps_the_records(tmp_path):
    data = tmp_path / "var"
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(BLOCKER)
    pythonpath = os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH", "")) if p)
    env = {**os.environ, "CXR_DATA_DIR": str(data), "DEMO_NO_SERVE": "1", "DEMO_PNG": "3", "DEMO_DICOM": "1",
           "PYTHONPATH": pythonpath}
    proc = subprocess.run(["bash", str(REPO / "scripts" / "demo.sh")], env=env, cwd=REPO, capture_output=True,
                          text=True, timeout=1200)
    log = data / "demo.log"
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:] + (log.read_text()[-4000:] if log.exists() else "")
    terminal = proc.stdout + proc.stderr
    for noise in ("WARN", "Traceback", "unknown parameter", "not a writable location"):
        assert noise not in terminal, terminal
    assert f"Log of every step: {data}/demo.log" in proc.stdout and log.is_file()
    day = datetime.now(timezone.utc).strftime("%Y-%m-%d")
    runs = data / "lake" / "runs" / "demo" / day
    for name in ("backup", "warehouse_etl", "mart_export", "pipeline_report"):
        assert (runs / f"{name}.ipynb").is_file() and (runs / f"{name}.html").is_file(), name
        meta = json.loads((runs / f"{name}.ipynb").read_text())["metadata"]["papermill"]
        assert not meta.get("exception"), name
    backup = json.loads((runs / "backup.ipynb").read_text())["metadata"]["papermill"]["parameters"]
    assert backup["purge"] is False and backup["before"] > day
    coco = json.loads((data / "mart" / "demo" / "annotations" / "instances.json").read_text())
    assert len(coco["images"]) == 4  # 3 PNG + 1 DICOM, de-identified on the way
    report = outputs_text(json.loads((runs / "pipeline_report.ipynb").read_text()))
    assert "lake_backup" in report and "warehouse" in report and "ERROR" not in report
    assert f"pipeline report: {data.resolve().as_uri()}/lake/runs/demo/{day}/pipeline_report.html" in proc.stdout
    assert "Dashboard: http://127.0.0.1:8866/" in proc.stdout and "not serving" in proc.stdout
