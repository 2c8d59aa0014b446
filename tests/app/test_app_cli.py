"""`cxr dashboard`'s Voila command line: loopback, culling, a websocket limit fit for DICOM."""

from __future__ import annotations

from pathlib import Path

import pytest

from cxr.cli.dashboard_cmd import NOTEBOOK, voila_command, voila_env

pytestmark = pytest.mark.unit


def test_voila_command_defaults():
    cmd = voila_command(NOTEBOOK, host="127.0.0.1", port=8866, max_upload_bytes=64 * 1024 * 1024)
    assert "--Voila.ip=127.0.0.1" in cmd and "--port=8866" in cmd and "--no-browser" in cmd
    assert any(a.startswith("--MappingKernelManager.cull_idle_timeout=") for a in cmd)
    assert any(a.startswith("--MappingKernelManager.cull_interval=") for a in cmd)
    (ws,) = [a for a in cmd if "websocket_max_message_size" in a]
    assert int(ws.split(":")[1].strip(" }")) >= 128 * 1024 * 1024  # two uploads' worth of the 64 MB limit
    assert NOTEBOOK.is_file()


def test_voila_env_uses_absolute_paths(make_settings):
    env = voila_env(make_settings(data_dir=Path("rel/var"), models_dir=Path("rel/models")))
    assert Path(env["CXR_DATA_DIR"]).is_absolute() and Path(env["CXR_MODELS_DIR"]).is_absolute()


def test_notebook_is_thin_and_has_parameters():
    import nbformat

    nb = nbformat.read(NOTEBOOK, as_version=4)
    assert nb.metadata["kernelspec"]["name"] == "cxr"
    assert "parameters" in nb.cells[0].metadata.get("tags", [])
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code")
    assert sum(len(c.source.splitlines()) for c in nb.cells) < 12
