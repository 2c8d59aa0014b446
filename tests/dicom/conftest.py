"""Fixtures of the DICOM network tests: an in-process listener, Orthanc, phantom sets."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from dicom_helpers import MODELS, free_port, mixed_phantoms  # noqa: E402


@pytest.fixture(scope="session")
def twenty_phantoms(tmp_path_factory) -> list[Path]:
    """20 phantom DICOMs with fake patients: 10 explicit VR little endian, 10 JPEG 2000 lossless."""
    return mixed_phantoms(tmp_path_factory.mktemp("phantoms"), 20)


@pytest.fixture
def predictor():
    """The shipped demo model (ONNX); the tests that need a slow or failing one make their own."""
    from cxr.config import load_settings
    from cxr.model.predict import load_predictor

    if not (MODELS / "cxr-demo").is_dir():
        pytest.fail("no model under models/cxr-demo", pytrace=False)
    return load_predictor(load_settings(models_dir=MODELS))


@pytest.fixture
def listen(make_settings, predictor):
    """``listen(engine, lake, predictor=None, **settings) -> Listener``: the listener in this process on a
    free port (allowed: SENDER and STORESCU from 127.0.0.1, unless given); stopped after the test."""
    from cxr.ingest.network import start_listener
    from cxr.stores.catalog import Stores

    started = []

    def start(engine, lake, predictor_=None, **overrides):
        overrides.setdefault("dicom_allowed_aes", "SENDER@127.0.0.1, STORESCU@127.0.0.1")
        overrides.setdefault("dicom_busy_wait_s", 30)
        settings = make_settings(models_dir=MODELS, dicom_port=free_port(), **overrides)
        listener = start_listener(Stores.open(settings, engine=engine, lake=lake), predictor_ or predictor)
        started.append(listener)
        return listener

    yield start
    for listener in started:
        listener.stop(grace_s=30)


@pytest.fixture
def orthanc(tmp_path):
    """``orthanc(listener_port) -> Orthanc``: Debian's Orthanc on free ports forwarding CR/DX to the listener."""
    from cxr.devtools.services import Orthanc

    started = []

    def start(listener_port: int):
        pacs = Orthanc(tmp_path / "services", free_port(), http_port=free_port(), listener=("CXR", listener_port))
        pacs.start()
        started.append(pacs)
        return pacs

    yield start
    for pacs in started:
        pacs.stop()
