"""notebooks/backup.ipynb: parameters cell first, committed without outputs, runs (dry run, no Spark) with papermill."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "backup.ipynb"


@pytest.mark.unit
def test_notebook_shape():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert "parameters" in code[0].metadata.get("tags", [])
    for name in ("before", "purge", "engine", "glue_job_name"):
        assert f"{name} = " in code[0].source
    assert all(not c.outputs and c.execution_count is None for c in code)
    assert nb.metadata.kernelspec.name == "cxr"


@pytest.mark.integration
def test_notebook_dry_run_with_papermill(make_settings, tmp_path):
    import papermill as pm

    from cxr.stores import db

    settings = make_settings()  # CXR_DATA_DIR of this test: the kernel inherits it
    db.upgrade(db.engine_from_settings(settings))
    out = tmp_path / "out.ipynb"
    pm.execute_notebook(str(NOTEBOOK), str(out), parameters={"before": "2024-03-01", "dry_run": True},
                        kernel_name="cxr", cwd=str(tmp_path), progress_bar=False)
    text = "".join(o.get("text", "") for c in nbformat.read(out, as_version=4).cells for o in c.get("outputs", []))
    assert "to back up: 0 transactions of 0 images" in text and "dry run" in text
