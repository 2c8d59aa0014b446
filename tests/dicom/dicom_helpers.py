"""Helpers of the DICOM network tests: phantom files in several transfer syntaxes, peers, scans."""

from __future__ import annotations

import io
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, JPEG2000Lossless, generate_uid
from sqlalchemy import func, select

REPO = Path(__file__).resolve().parents[2]
MODELS = REPO / "models"
DX = "1.2.840.10008.5.1.4.1.1.1.1"
PDF_STORAGE = "1.2.840.10008.5.1.4.1.1.104.1"
#: PatientName etc. values the tests look for everywhere after the network path.
PHI_KEYWORDS = ("PatientName", "PatientID", "PatientBirthDate", "AccessionNumber", "PatientAddress",
                "OtherPatientIDs", "ReferringPhysicianName", "InstitutionName", "StudyID")
UID_KEYWORDS = ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "FrameOfReferenceUID")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def phantom_dataset(seed: int, *, size: int = 192, syntax: str = ExplicitVRLittleEndian,
                    view: str | None = "PA") -> Dataset:
    """A phantom DX image with FAKE patient tags, in ``syntax`` (JPEG 2000 encoded by pylibjpeg-openjpeg)."""
    from cxr.model.phantoms import dicom_bytes, generate_phantom

    ds = pydicom.dcmread(io.BytesIO(dicom_bytes(generate_phantom(seed, size=size))))
    if view is None:
        del ds.ViewPosition
    else:
        ds.ViewPosition = view
    if syntax != ExplicitVRLittleEndian:
        ds.compress(syntax)
    return ds


def variants(ds: Dataset, n: int) -> list[Dataset]:
    """``n`` copies of ``ds`` as other instances of other studies (new UIDs): cheaper than new phantoms."""
    import copy

    out = []
    for _ in range(n):
        v = copy.deepcopy(ds)
        v.SOPInstanceUID = v.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        v.StudyInstanceUID, v.SeriesInstanceUID = generate_uid(), generate_uid()
        out.append(v)
    return out


def write_phantoms(folder: Path, seeds: Iterable[int], *, size: int = 192, syntax: str = ExplicitVRLittleEndian,
                   view: str | None = "PA") -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for seed in seeds:
        path = folder / f"phantom-{seed}.dcm"
        phantom_dataset(seed, size=size, syntax=syntax, view=view).save_as(path, enforce_file_format=True)
        out.append(path)
    return out


def mixed_phantoms(folder: Path, n: int = 20, *, first_seed: int = 1000, size: int = 192) -> list[Path]:
    """``n`` phantoms: half explicit VR little endian, half JPEG 2000 lossless."""
    half = n // 2
    return (write_phantoms(folder / "explicit", range(first_seed, first_seed + half), size=size)
            + write_phantoms(folder / "j2k", range(first_seed + half, first_seed + n), size=size,
                             syntax=JPEG2000Lossless))


def pdf_dataset() -> Dataset:
    """An Encapsulated PDF instance (a non-image SOP class) with a fake patient."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = PDF_STORAGE
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = PDF_STORAGE, meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.Modality, ds.PatientName, ds.PatientID = "DOC", "Pdfpatient^Ottilie", "PDF-PID-4411"
    ds.MIMETypeOfEncapsulatedDocument = "application/pdf"
    ds.EncapsulatedDocument = b"%PDF-1.4\n%%EOF\n\x00"
    return ds


def phi_values(paths: Iterable[Path]) -> set[str]:
    """Identifying values of the files: patient values (and their name parts) and original UIDs."""
    out: set[str] = set()
    for path in paths:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        for kw in PHI_KEYWORDS + UID_KEYWORDS:
            value = str(ds.get(kw, "") or "")
            if len(value) >= 4:
                out.add(value)
                out.update(p for p in value.replace("^", " ").replace(",", " ").split() if len(p) >= 5 and not p.isdigit())
        birth = str(ds.get("PatientBirthDate", "") or "")
        if birth:
            out.add(f"{birth[:4]}-{birth[4:6]}-{birth[6:]}")
    out -= {"Hospital", "Street", "Road", "Avenue", "General", "Medical", "Center", "Institute", "Chest", "City",
            "Clinique", "Riverside", "Example"}
    return out


def counts(engine) -> dict[str, int]:
    from cxr.stores.schema import TABLES

    with engine.connect() as conn:
        return {t.name: conn.execute(select(func.count()).select_from(t)).scalar_one() for t in TABLES}


def send(port: int, datasets: list[Dataset], *, calling_ae: str = "SENDER", called_ae: str = "CXR",
         timeout: float = 60) -> list[int]:
    """C-STORE ``datasets`` on ONE association with pynetdicom; the statuses (-1: no response)."""
    from pynetdicom import AE

    ae = AE(ae_title=calling_ae)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = timeout
    for uid in {str(d.SOPClassUID) for d in datasets}:
        ae.add_requested_context(uid, sorted({str(d.file_meta.TransferSyntaxUID) for d in datasets
                                              if str(d.SOPClassUID) == uid}))
    assoc = ae.associate("127.0.0.1", port, ae_title=called_ae)
    assert assoc.is_established, "association refused"
    statuses = []
    try:
        for d in datasets:
            rsp = assoc.send_c_store(d)
            statuses.append(int(rsp.Status) if rsp is not None and "Status" in rsp else -1)
        assert assoc.is_established, "the association ended"
    finally:
        if assoc.is_established:
            assoc.release()
    return statuses


def dcmtk(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([*args], capture_output=True, text=True, timeout=timeout, check=False)


class ListenerProcess:
    """``cxr dicom listen`` in a subprocess with ``env``; its stderr goes to ``log``."""

    def __init__(self, env: dict[str, str], log: Path, cwd: Path):
        self.env, self.log, self.cwd = env, log, cwd
        self.port = int(env["CXR_DICOM_PORT"])
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 90) -> ListenerProcess:
        from cxr.dicom.scu import Peer, echo

        fh = self.log.open("ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "cxr", "dicom", "listen"], env=self.env, cwd=self.cwd,
                                     stdin=subprocess.DEVNULL, stdout=fh, stderr=subprocess.STDOUT)
        fh.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"listener exited {self.proc.returncode}: {self.log.read_text()[-2000:]}"
            try:
                if echo(Peer("CXR", "127.0.0.1", self.port), calling_ae="STORESCU", timeout=2) == 0:
                    return self
            except Exception:  # noqa: BLE001 - not up yet
                time.sleep(0.3)
        raise AssertionError(f"listener did not answer: {self.log.read_text()[-2000:]}")

    def terminate(self, timeout: float = 120) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(30)

    def text(self) -> str:
        return self.log.read_text(errors="replace")


class CountingPredictor:
    """A detector double: one fixed box per image, counting its runs; ``gate`` (an Event) holds each run."""

    model_name = "test-detector"
    model_version = "test-1"
    classes = ("Aortic enlargement", "Cardiomegaly", "ILD", "Infiltration", "Nodule/Mass")

    def __init__(self, gate=None):
        self.calls = 0
        self.gate = gate

    def infer(self, image):
        import numpy as np

        from cxr.model.postprocess import RawOutput

        self.calls += 1
        if self.gate is not None:
            self.gate.wait(60)
        h, w = image.shape
        return RawOutput(kind="boxes", orig_size=(h, w), boxes=np.array([[w * 0.2, h * 0.3, w * 0.6, h * 0.7]], np.float32),
                         scores=np.array([0.9], np.float32), class_ids=np.array([1], np.int64))

    def postprocess(self, raw, *, score_thr=0.5, nms_thr=0.5, **_kw):
        from cxr.model.postprocess import filter_detections

        return filter_detections(raw.boxes, raw.scores, raw.class_ids, self.classes, score_thr=score_thr,
                                 nms_thr=nms_thr)
