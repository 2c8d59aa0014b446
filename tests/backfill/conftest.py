"""Backfill fixtures: ONE local[2] SparkSession, an export folder of small phantoms (DICOM with J2K,
PNG) with bad files among them, and the settings that point a backfill at a given DB and lake."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from backfill_factory import j2k_dicom  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
MODELS = REPO / "models"


@pytest.fixture(scope="session")
def spark():
    """local[2], started once. A process has one SparkSession (``getOrCreate``), and the backup's tests
    reuse whichever was started first, so it carries the JDBC jars the backup needs (the backfill does
    not). Its Python workers inherit the environment the JVM starts with, so the S3 endpoint's test
    credentials are set first (a real executor has the instance role's).
    """
    from cxr.config import load_settings
    from cxr.devtools.services import TEST_AWS
    from cxr.stores.spark import spark_session

    with pytest.MonkeyPatch.context() as mp:
        for name, value in TEST_AWS.items():
            mp.setenv(name, value)
        session = spark_session(load_settings(), master="local[2]", app_name="cxr-tests", jdbc=True)
        session.sparkContext.environment.update(TEST_AWS)  # also when another area's fixture made the session
        yield session
        session.stop()


@pytest.fixture
def export(tmp_path):
    """``export(n_good) -> (folder, n_good, bad_names)``: n_good images (J2K DICOM and a PNG in a
    subfolder) plus three files that must be refused: not an image, a truncated DICOM, an empty file."""
    from cxr.model.phantoms import generate_phantom, write_png

    def make(n_good: int = 6, root: Path | None = None) -> tuple[Path, int, list[str]]:
        root = root or tmp_path / "export"
        for i in range(n_good - 1):
            (root / "studies").mkdir(parents=True, exist_ok=True)
            (root / "studies" / f"img{i:03d}.dcm").write_bytes(j2k_dicom(1000 + i))
        write_png(generate_phantom(2000, 160), root / "png" / "one.png")
        (root / "notes.dcm").write_bytes(b"this is a text file, not DICOM\n" * 4)
        (root / "cut.dcm").write_bytes(j2k_dicom(3000)[:900])
        (root / "empty.png").write_bytes(b"")
        (root / ".hidden" ).mkdir(exist_ok=True)
        (root / ".hidden" / "skip.dcm").write_bytes(b"never listed")
        return root, n_good, ["notes.dcm", "cut.dcm", "empty.png"]

    return make


@pytest.fixture
def backfill_settings(make_settings):
    """``backfill_settings(engine, lake, **kw)``: settings naming this DB and lake and the checkout's models."""

    def make(engine, lake, **kw):
        endpoint = lake.client.meta.endpoint_url if hasattr(lake, "client") else None
        return make_settings(db_url=engine.url.render_as_string(hide_password=False), lake_url=lake.url,
                             s3_endpoint_url=endpoint, models_dir=MODELS, **kw)

    return make
