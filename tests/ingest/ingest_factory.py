"""Test inputs made here with pydicom and Pillow: DICOMs with fake patient tags, rasters, bad files."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.sequence import Sequence
from pydicom.uid import (
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    RLELossless,
    generate_uid,
)

DX_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.1.1"

#: Fake patient values written into the DICOM test files (all invented).
FAKE = {
    "PatientName": "Testpatient^Wilhelmina^Q",
    "PatientID": "PID-7730418",
    "PatientBirthDate": "19530417",
    "PatientAddress": "42 Nowhere Lane, Fakeville 99999",
    "PatientTelephoneNumbers": "+1-555-0142-7788",
    "OtherPatientIDs": "OTHER-ID-55127",
    "InstitutionName": "Saint Imaginary Hospital",
    "InstitutionAddress": "1 Invented Plaza, Nulltown",
    "ReferringPhysicianName": "Doctorova^Primrose",
    "PerformingPhysicianName": "Radiologist^Bartholomew",
    "OperatorsName": "Techname^Ulrike",
    "AccessionNumber": "ACC99887766",
    "StudyDate": "20240309",
    "SeriesDate": "20240309",
    "AcquisitionDate": "20240308",
    "ContentDate": "20240310",
    "StudyTime": "101530",
    "StudyID": "STUDY4711X",
    "StationName": "XRAYROOM-ZETA",
    "DeviceSerialNumber": "SN-00-42-TESTDEV",
    "PrivateValue": "PRIVATE-SECRET-NOTE-123",
    "StudyDescription": "Chest for Wilhelmina",
}


def gradient(h: int = 128, w: int = 96, bits: int = 8) -> np.ndarray:
    """A smooth test image with a bright disc, as uint8 or uint16."""
    yy, xx = np.mgrid[0:h, 0:w]
    img = (xx / (w - 1)) * 0.6 + 0.2 * ((yy - h / 2) ** 2 + (xx - w / 2) ** 2 < (min(h, w) / 4) ** 2)
    top = 2**bits - 1
    return np.round(img * top).astype(np.uint8 if bits == 8 else np.uint16)


def make_dicom(pixels: np.ndarray | None = None, *, photometric: str = "MONOCHROME2", bits_stored: int | None = None,
               transfer_syntax=ExplicitVRLittleEndian, modality: str = "DX", body_part: str = "CHEST",
               phi: bool = True, extra: dict | None = None, frames: int = 1, samples: int = 1,
               no_pixels: bool = False) -> bytes:
    """A DICOM file with fake patient tags (``FAKE``), a private tag and a nested sequence."""
    if pixels is None:
        pixels = gradient()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = DX_IMAGE_STORAGE
    sop_uid = generate_uid()
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = DX_IMAGE_STORAGE
    ds.SOPInstanceUID = sop_uid
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.FrameOfReferenceUID = generate_uid()
    ds.Modality = modality
    if body_part:
        ds.BodyPartExamined = body_part
    ds.Manufacturer = "TestCo"
    if phi:
        for k, v in FAKE.items():
            if k != "PrivateValue":
                setattr(ds, k, v)
        block = ds.private_block(0x0011, "FAKE PRIVATE CREATOR", create=True)
        block.add_new(0x01, "LO", FAKE["PrivateValue"])
        item = Dataset()
        item.ReferencedSOPClassUID = DX_IMAGE_STORAGE
        item.ReferencedSOPInstanceUID = ds.StudyInstanceUID
        item.PatientName = FAKE["PatientName"]
        ds.ReferencedImageSequence = Sequence([item])
    for k, v in (extra or {}).items():
        setattr(ds, k, v)
    if not no_pixels:
        arr = pixels
        if frames > 1:
            arr = np.stack([pixels] * frames)
            ds.NumberOfFrames = frames
        if samples == 3:
            arr = np.stack([pixels] * 3, axis=-1)
            ds.PlanarConfiguration = 0
        ds.SamplesPerPixel = samples
        ds.PhotometricInterpretation = photometric if samples == 1 else "RGB"
        ds.Rows, ds.Columns = pixels.shape
        bits = 8 if pixels.dtype == np.uint8 else 16
        ds.BitsAllocated = bits
        ds.BitsStored = bits_stored or bits
        ds.HighBit = ds.BitsStored - 1
        ds.PixelRepresentation = 0
        ds.PixelData = arr.tobytes()
        if transfer_syntax == JPEGBaseline8Bit:  # no encoder plugin: encapsulate Pillow's JPEG
            ds.PixelData = encapsulate([jpeg_bytes(pixels)])
            ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
            ds.LossyImageCompression = "01"
        elif transfer_syntax != ExplicitVRLittleEndian:
            ds.compress(transfer_syntax, arr)
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def png_bytes(arr: np.ndarray, mode: str | None = None, **save) -> bytes:
    buf = io.BytesIO()
    im = Image.fromarray(arr) if mode is None else Image.fromarray(arr).convert(mode)
    im.save(buf, format="PNG", **save)
    return buf.getvalue()


def jpeg_bytes(arr: np.ndarray, mode: str | None = None, **save) -> bytes:
    buf = io.BytesIO()
    im = Image.fromarray(arr)
    if mode:
        im = im.convert(mode)
    im.save(buf, format="JPEG", quality=92, **save)
    return buf.getvalue()


def count_rows(engine) -> dict[str, int]:
    from sqlalchemy import func, select

    from cxr.stores.schema import TABLES

    with engine.connect() as conn:
        return {t.name: conn.execute(select(func.count()).select_from(t)).scalar_one() for t in TABLES}


def lake_keys(lake) -> list[str]:
    return sorted(o.key for o in lake.list(""))



def require_model():
    """The checkout's model registry (models/, or $E2E_MODELS_DIR) with cxr-demo in it, or skip.

    e2e tests use the real ONNX model, never the test double."""
    from pathlib import Path

    import pytest

    from cxr.model.registry import list_versions

    import os

    root = Path(os.environ.get("E2E_MODELS_DIR") or Path(__file__).resolve().parents[2] / "models")
    if not list_versions(root, "cxr-demo"):
        pytest.skip("no model under models/cxr-demo: run `cxr model train --recipe demo` first")
    return root


__all__ = ["FAKE", "gradient", "make_dicom", "png_bytes", "jpeg_bytes", "JPEG2000Lossless", "JPEGBaseline8Bit", "RLELossless", "count_rows", "lake_keys", "FakePredictor", "require_model"]


class FakePredictor:
    """A test double for ``cxr.model.predict.Predictor`` (unit tests only; e2e tests use the real model).

    ``infer`` returns fixed boxes placed relative to the image size, with scores 0.95 down to 0.15,
    including two overlapping boxes of one class so NMS has something to remove; ``postprocess``
    is the real numpy filter. ``infer_calls`` counts model runs.
    """

    model_name = "fake-detector"
    model_version = "test-0"
    card_markdown = "# Fake detector\n\nA test double. Trained on synthetic images; not for clinical use."

    def __init__(self, classes=None):
        from cxr.model.classes import SEED_CLASSES

        self.classes = tuple(classes or SEED_CLASSES)
        self.infer_calls = 0

    def infer(self, image):
        from cxr.model.postprocess import RawOutput

        self.infer_calls += 1
        h, w = image.shape
        rel = np.array([[0.10, 0.10, 0.40, 0.40], [0.12, 0.12, 0.42, 0.42], [0.50, 0.50, 0.90, 0.80],
                        [0.20, 0.60, 0.35, 0.75], [0.60, 0.10, 0.85, 0.30], [0.05, 0.70, 0.25, 0.95]], np.float32)
        boxes = rel * np.array([w, h, w, h], np.float32)
        scores = np.array([0.95, 0.80, 0.65, 0.45, 0.30, 0.15], np.float32)
        ids = np.array([0, 0, 1, 2, 3, 4], np.int64) % len(self.classes)
        return RawOutput(kind="boxes", orig_size=(h, w), boxes=boxes, scores=scores, class_ids=ids)

    def postprocess(self, raw, *, score_thr=0.5, nms_thr=0.5, class_thr=None, classes=None, topk=1000, max_det=100):
        from cxr.model.postprocess import filter_detections

        return filter_detections(raw.boxes, raw.scores, raw.class_ids, self.classes, score_thr=score_thr,
                                 nms_thr=nms_thr, class_thr=class_thr, classes=classes, topk=topk, max_det=max_det)

    def predict(self, image, **kw):
        return self.postprocess(self.infer(image), **kw)
