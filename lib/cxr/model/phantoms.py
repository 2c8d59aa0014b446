"""Synthetic "phantom" chest X-rays with labeled findings, deterministic for a seed.

No chest X-ray data can be downloaded here, so the demo detector learns from these. A phantom
has lung fields, mediastinum, heart, aortic knob, rib arcs and noise; findings are drawn on top:

- **Nodule/Mass**: small bright round lesions inside the lungs (box = the disc);
- **Cardiomegaly**: an enlarged heart (box = the heart), a normal heart is unlabeled;
- **Aortic enlargement**: an enlarged aortic knob (box = the knob);
- **ILD**: a reticular (net-like) pattern in a lower lung zone;
- **Infiltration**: a hazy soft patch in a lung;
- any other class name (e.g. VinDr-CXR's 14): a textured patch whose texture depends on the class index.

The images are synthetic: nothing here is patient data, and a model trained on them is for
demonstration only, **not for clinical use**. DICOM files carry realistic but FAKE patient tags so
de-identification can be tested.

(About 440 lines, over the project's 400: the drawing steps and the two file writers are one
concept, a phantom, and nothing else reads the drawing steps.)
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import io
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, JPEG2000Lossless, generate_uid

from cxr.errors import InputError
from cxr.model.classes import SEED_CLASSES, resolve_classes

__all__ = ["Phantom", "generate_phantom", "write_png", "write_dicom", "fake_patient", "png_bytes", "dicom_bytes", "to_float"]


@dataclass
class Phantom:
    """One synthetic image: ``image`` uint16 HxW (full 16-bit range), boxes xyxy pixels, labels into ``class_names``."""

    image: np.ndarray
    boxes: np.ndarray
    labels: np.ndarray
    class_names: tuple[str, ...]
    seed: int = 0
    meta: dict = field(default_factory=dict)

    @property
    def height(self) -> int:
        return int(self.image.shape[0])

    @property
    def width(self) -> int:
        return int(self.image.shape[1])

    def as_float(self) -> np.ndarray:
        """The image as float32 in [0, 1] (what a predictor takes)."""
        return to_float(self.image)


def to_float(image: np.ndarray) -> np.ndarray:
    """uint8/uint16/float image -> float32 [0, 1]."""
    if image.dtype == np.uint8:
        return image.astype(np.float32) / 255.0
    if image.dtype == np.uint16:
        return image.astype(np.float32) / 65535.0
    return np.clip(image.astype(np.float32), 0.0, 1.0)


# ---------------------------------------------------------------------------------------------
# drawing primitives (all on a float32 canvas, coordinates in pixels)


def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    return yy, xx


def _ellipse_mask(yy, xx, cy, cx, ry, rx, soft: float = 1.5) -> np.ndarray:
    """Soft-edged filled ellipse, values in [0, 1]."""
    d = np.sqrt(((yy - cy) / max(ry, 1e-3)) ** 2 + ((xx - cx) / max(rx, 1e-3)) ** 2)
    edge = soft / max(min(rx, ry), 1.0)
    return np.clip((1.0 - d) / edge + 0.5, 0.0, 1.0)


def _smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Low-frequency noise in [-1, 1]: random cells upsampled bilinearly."""
    small = rng.uniform(-1.0, 1.0, size=(cells, cells)).astype(np.float32)
    return np.asarray(Image.fromarray(small, mode="F").resize((size, size), Image.BILINEAR), dtype=np.float32)


def _window(size: int, cy: float, cx: float, r: float) -> tuple[slice, slice]:
    y0, y1 = max(0, int(cy - r - 3)), min(size, int(cy + r + 4))
    x0, x1 = max(0, int(cx - r - 3)), min(size, int(cx + r + 4))
    return slice(y0, y1), slice(x0, x1)


def _box(cx: float, cy: float, rx: float, ry: float, size: int) -> list[float]:
    return [max(0.0, cx - rx), max(0.0, cy - ry), min(float(size), cx + rx), min(float(size), cy + ry)]


# ---------------------------------------------------------------------------------------------


@dataclass
class _Canvas:
    """One phantom being drawn: the float canvas, its pixel grid, the random stream and the labels so far.

    The drawing steps below run in a fixed order and draw their random numbers in a fixed order:
    a seed gives the same image and boxes in every release.
    """

    rng: np.random.Generator
    size: int
    class_names: tuple[str, ...]
    yy: np.ndarray
    xx: np.ndarray
    img: np.ndarray
    boxes: list[list[float]] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    body_cx: float = 0.0
    lung_dy: float = 0.0
    lungs: list[tuple[float, float, float, float]] = field(default_factory=list)
    lung_mask: np.ndarray | None = None

    @property
    def s(self) -> float:
        """Scale of the drawing relative to a 512-pixel phantom."""
        return self.size / 512.0

    def add(self, name: str, box: list[float]) -> None:
        if name in self.class_names and box[2] - box[0] >= 2 and box[3] - box[1] >= 2:
            self.boxes.append(box)
            self.labels.append(self.class_names.index(name))

    def lung_point(self, margin: float) -> tuple[float, float]:
        """A random point inside one lung, at least ``margin`` from its edge."""
        for _ in range(50):
            cy, cx, ry, rx = self.lungs[int(self.rng.integers(0, 2))]
            py, px = cy + self.rng.uniform(-1, 1) * (ry - margin), cx + self.rng.uniform(-1, 1) * (rx - margin)
            if ((py - cy) / max(ry - margin, 1)) ** 2 + ((px - cx) / max(rx - margin, 1)) ** 2 <= 1:
                return py, px
        return cy, cx


def _anatomy(c: _Canvas) -> None:
    """Body, lungs, ribs (bright arcs across each lung), mediastinum and spine."""
    rng, size, s, yy, xx = c.rng, c.size, c.s, c.yy, c.xx
    c.body_cx = body_cx = size * (0.5 + rng.uniform(-0.02, 0.02))
    c.img += 0.38 * _ellipse_mask(yy, xx, size * 0.58, body_cx, size * 0.52, size * 0.46, soft=8 * s)
    c.lung_dy = rng.uniform(-0.02, 0.02) * size
    for side in (-1, 1):
        cx = body_cx + side * size * rng.uniform(0.17, 0.19)
        cy = size * 0.47 + c.lung_dy
        ry, rx = size * rng.uniform(0.27, 0.30), size * rng.uniform(0.12, 0.14)
        c.lungs.append((cy, cx, ry, rx))
    c.lung_mask = np.maximum(*[_ellipse_mask(yy, xx, *lung, soft=6 * s) for lung in c.lungs])
    c.img -= 0.24 * c.lung_mask
    rib_layer = np.zeros_like(c.img)
    for side in (-1, 1):
        for k in range(9):
            y0 = size * (0.22 + 0.055 * k) + rng.normal(0, 1.5 * s)
            curv = rng.uniform(0.0018, 0.0026) / s
            xc = body_cx + side * size * 0.05
            yline = y0 + curv * (xx - xc) ** 2 * 0.5 - side * 0.15 * (xx - xc)
            thick = size * 0.010
            on_side = (xx - body_cx) * side > size * 0.03
            rib_layer += np.where(on_side, np.clip(1.0 - np.abs(yy - yline) / thick, 0, 1), 0)
    c.img += 0.07 * np.clip(rib_layer, 0, 1.5) * (0.4 + 0.6 * c.lung_mask)
    c.img += 0.28 * _ellipse_mask(yy, xx, size * 0.42, body_cx, size * 0.30, size * 0.065, soft=5 * s)


def _heart(c: _Canvas, enlarged: bool) -> None:
    """The heart: normal, or enlarged (Cardiomegaly, boxed)."""
    rng, size = c.rng, c.size
    h_rx = size * (rng.uniform(0.20, 0.23) if enlarged else rng.uniform(0.11, 0.14))
    h_ry = size * (rng.uniform(0.15, 0.17) if enlarged else rng.uniform(0.10, 0.12))
    h_cx = c.body_cx + size * rng.uniform(0.02, 0.04)
    h_cy = size * 0.64 + c.lung_dy
    c.img += 0.30 * _ellipse_mask(c.yy, c.xx, h_cy, h_cx, h_ry, h_rx, soft=4 * c.s)
    if enlarged:
        c.add("Cardiomegaly", _box(h_cx, h_cy, h_rx, h_ry, size))


def _aortic_knob(c: _Canvas, enlarged: bool) -> None:
    """The aortic knob: normal, or enlarged (Aortic enlargement, boxed)."""
    rng, size = c.rng, c.size
    a_r = size * (rng.uniform(0.055, 0.07) if enlarged else rng.uniform(0.025, 0.032))
    a_cx, a_cy = c.body_cx - size * 0.07, size * 0.27 + c.lung_dy
    win = _window(size, a_cy, a_cx, a_r)
    c.img[win] += 0.30 * _ellipse_mask(c.yy[win], c.xx[win], a_cy, a_cx, a_r, a_r, soft=2 * c.s)
    if enlarged:
        c.add("Aortic enlargement", _box(a_cx, a_cy, a_r, a_r, size))


def _ild(c: _Canvas) -> None:
    """ILD: a reticular (net-like) pattern in a lower lung zone."""
    rng, size, s, yy, xx = c.rng, c.size, c.s, c.yy, c.xx
    cy, cx, ry, rx = c.lungs[int(rng.integers(0, 2))]
    bw, bh = rx * rng.uniform(1.2, 1.7), ry * rng.uniform(0.6, 0.9)
    x0, y0 = cx - bw / 2, cy + ry * 0.85 - bh
    net = np.abs(np.sin((xx - x0) * (0.55 / s) + 2 * _smooth_noise(rng, size, 12))) < 0.25
    net |= np.abs(np.sin((yy - y0) * (0.5 / s) + 2 * _smooth_noise(rng, size, 12))) < 0.25
    region = _ellipse_mask(yy, xx, y0 + bh / 2, x0 + bw / 2, bh / 2, bw / 2, soft=3 * s) * c.lung_mask
    c.img += 0.16 * net.astype(np.float32) * region
    ys, xs = np.nonzero(region > 0.5)
    if len(xs):
        c.add("ILD", [float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)])


def _infiltration(c: _Canvas) -> None:
    """Infiltration: a hazy soft patch in a lung."""
    rng = c.rng
    cy, cx, ry, rx = c.lungs[int(rng.integers(0, 2))]
    pr_x, pr_y = rx * rng.uniform(0.45, 0.7), ry * rng.uniform(0.3, 0.45)
    py, px = cy + rng.uniform(-0.4, 0.2) * ry, cx + rng.uniform(-0.2, 0.2) * rx
    patch = _ellipse_mask(c.yy, c.xx, py, px, pr_y, pr_x, soft=pr_x * 0.5)
    c.img += 0.17 * patch * (0.75 + 0.25 * _smooth_noise(rng, c.size, 24))
    c.add("Infiltration", _box(px, py, pr_x, pr_y, c.size))


_DRAWN = frozenset({"Nodule/Mass", "Cardiomegaly", "Aortic enlargement", "ILD", "Infiltration"})


def _other_findings(c: _Canvas, present: dict[str, bool]) -> None:
    """Any other class (e.g. VinDr-CXR's): a textured patch whose texture depends on the class index."""
    rng, size, s = c.rng, c.size, c.s
    for idx, name in enumerate(c.class_names):
        if name in _DRAWN or not present[name]:
            continue
        r = size * rng.uniform(0.04, 0.08)
        py, px = c.lung_point(r)
        freq = (0.15 + 0.07 * (idx % 7)) / s
        win = _window(size, py, px, r)
        tex = 0.5 + 0.5 * np.sin((c.xx[win] + (idx % 3) * c.yy[win]) * freq)
        c.img[win] += 0.18 * _ellipse_mask(c.yy[win], c.xx[win], py, px, r, r * 1.3, soft=2 * s) * tex
        c.add(name, _box(px, py, r * 1.3, r, size))


def _nodules(c: _Canvas, n: int) -> None:
    """Nodule/Mass: ``n`` bright discs inside the lungs that do not touch each other."""
    rng, size, s = c.rng, c.size, c.s
    placed: list[tuple[float, float, float]] = []
    for _ in range(n):
        r = size * (rng.uniform(0.03, 0.05) if rng.uniform() < 0.8 else rng.uniform(0.05, 0.075))
        for _try in range(20):
            py, px = c.lung_point(r)
            if all((py - qy) ** 2 + (px - qx) ** 2 > (r + qr + 4 * s) ** 2 for qy, qx, qr in placed):
                break
        else:
            continue
        placed.append((py, px, r))
        win = _window(size, py, px, r)
        disc = _ellipse_mask(c.yy[win], c.xx[win], py, px, r, r, soft=1.2 * s)
        shade = 1.0 - 0.25 * np.sqrt(((c.yy[win] - py) ** 2 + (c.xx[win] - px) ** 2)) / r
        c.img[win] += rng.uniform(0.20, 0.30) * disc * np.clip(shade, 0.5, 1.0)
        c.add("Nodule/Mass", _box(px, py, r, r, size))


def _exposure(c: _Canvas) -> np.ndarray:
    """Exposure variation and noise; the finished image as 16-bit."""
    rng, size = c.rng, c.size
    c.img *= 1.0 + 0.08 * _smooth_noise(rng, size, 4)
    c.img += 0.03 * _smooth_noise(rng, size, 64)
    c.img += rng.normal(0.0, 0.015, size=c.img.shape).astype(np.float32)
    return np.round(np.clip(c.img, 0.0, 1.0) * 65535.0).astype(np.uint16)


def generate_phantom(
    seed: int,
    size: int = 512,
    classes: tuple[str, ...] | list[str] | str | None = SEED_CLASSES,
    *,
    packed: bool = False,
    finding_prob: float = 0.4,
) -> Phantom:
    """A synthetic chest X-ray for ``seed`` (same seed, same image and boxes).

    ``packed=True`` draws many more findings per image (nodule-packed training images learn faster).
    """
    if size < 64:
        raise InputError(f"phantom size must be >= 64 px, got {size}")
    class_names = resolve_classes(classes)
    rng = np.random.default_rng(seed)
    yy, xx = _grid(size)
    c = _Canvas(rng, size, class_names, yy, xx, np.full((size, size), 0.04, np.float32))
    _anatomy(c)
    present = {name: bool(rng.uniform() < (0.75 if packed else finding_prob)) for name in class_names}
    _heart(c, present.get("Cardiomegaly", False))
    _aortic_knob(c, present.get("Aortic enlargement", False))
    if present.get("ILD", False):
        _ild(c)
    if present.get("Infiltration", False):
        _infiltration(c)
    _other_findings(c, present)
    if "Nodule/Mass" in class_names:
        _nodules(c, int(rng.integers(3, 9)) if packed else (int(rng.integers(1, 4)) if present["Nodule/Mass"] else 0))
    image = _exposure(c)
    return Phantom(image=image, boxes=np.asarray(c.boxes, np.float32).reshape(-1, 4),
                   labels=np.asarray(c.labels, np.int64), class_names=class_names, seed=seed,
                   meta={"synthetic": True, "packed": packed})


# ---------------------------------------------------------------------------------------------
# writers


def png_bytes(phantom: Phantom, *, bits: int = 8) -> bytes:
    """The phantom as PNG bytes, 8-bit (default) or 16-bit grayscale."""
    if bits == 8:
        im = Image.fromarray((phantom.image >> 8).astype(np.uint8), mode="L")
    elif bits == 16:
        im = Image.fromarray(phantom.image.astype(np.uint16))
    else:
        raise InputError(f"PNG bits must be 8 or 16, got {bits}")
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def write_png(phantom: Phantom, path: str | Path, *, bits: int = 8) -> Path:
    """Write the phantom as a grayscale PNG."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(png_bytes(phantom, bits=bits))
    return path


_FIRST = ["MARIA", "JOHN", "ANA", "PETER", "LINH", "AHMED", "SOFIA", "KENJI", "OLGA", "DAVID", "AMARA", "LUCAS"]
_LAST = ["NGUYEN", "SMITH", "GARCIA", "MUELLER", "TANAKA", "KOWALSKI", "OKAFOR", "ROSSI", "HANSEN", "SILVA"]
_STREETS = ["Elm Street", "Harbor Road", "Linden Allee", "Rue des Lilas", "Tran Hung Dao", "Maple Avenue"]
_CITIES = ["Springfield", "Hanoi", "Lyon", "Bremen", "Osaka", "Porto"]
_HOSPITALS = ["St. Example General Hospital", "Riverside Medical Center", "Clinique du Parc", "City Chest Institute"]

#: the private tag written into every phantom DICOM (group 0x0011, creator "CXR PHANTOM")
PRIVATE_CREATOR = "CXR PHANTOM"


def fake_patient(seed: int) -> dict[str, str]:
    """Realistic but FAKE patient-identifying values for ``seed`` (what ``write_dicom`` writes)."""
    rng = np.random.default_rng(10_000_019 + int(seed))
    first, last = _FIRST[rng.integers(len(_FIRST))], _LAST[rng.integers(len(_LAST))]
    birth = _dt.date(1930, 1, 1) + _dt.timedelta(days=int(rng.integers(0, 30000)))
    study = _dt.date(2019, 1, 1) + _dt.timedelta(days=int(rng.integers(0, 2000)))
    return {
        "PatientName": f"{last}^{first}",
        "PatientID": f"PID{int(rng.integers(10**6, 10**7))}",
        "PatientBirthDate": birth.strftime("%Y%m%d"),
        "PatientSex": "F" if rng.uniform() < 0.5 else "M",
        "PatientAge": f"{min(99, (study - birth).days // 365):03d}Y",
        "PatientAddress": f"{int(rng.integers(1, 300))} {_STREETS[rng.integers(len(_STREETS))]}, {_CITIES[rng.integers(len(_CITIES))]}",
        "PatientTelephoneNumbers": f"+1-555-{int(rng.integers(1000, 9999))}",
        "OtherPatientIDs": f"MRN{int(rng.integers(10**5, 10**6))}",
        "InstitutionName": _HOSPITALS[rng.integers(len(_HOSPITALS))],
        "InstitutionAddress": f"{int(rng.integers(1, 99))} Hospital Way, {_CITIES[rng.integers(len(_CITIES))]}",
        "ReferringPhysicianName": f"DR^{_LAST[rng.integers(len(_LAST))]}",
        "PerformingPhysicianName": f"DR^{_FIRST[rng.integers(len(_FIRST))]}",
        "OperatorsName": f"TECH^{_FIRST[rng.integers(len(_FIRST))]}",
        "AccessionNumber": f"ACC{int(rng.integers(10**7, 10**8))}",
        "StudyID": f"S{int(rng.integers(1000, 9999))}",
        "StudyDate": study.strftime("%Y%m%d"),
        "StudyTime": f"{int(rng.integers(7, 19)):02d}{int(rng.integers(0, 60)):02d}00",
        "PrivateValue": f"internal-ref-{first.lower()}-{int(rng.integers(1000, 9999))}",
    }


def _uid(seed: int, kind: str) -> str:
    return str(generate_uid(entropy_srcs=[f"cxr-phantom-{kind}-{seed}"]))


def dicom_bytes(phantom: Phantom, *, photometric: str = "MONOCHROME2", bits: int = 16,
                patient: dict[str, str] | None = None, bits_stored: int | None = None,
                jpeg2000: bool = False) -> bytes:
    """The phantom as a DICOM (Digital X-Ray, explicit VR little endian) with FAKE patient tags.

    ``bits_stored`` < ``bits`` keeps the top bits (a 12-bit CR: ``bits_stored=12``); ``jpeg2000``
    compresses the pixels losslessly (JPEG 2000 Lossless, pylibjpeg-openjpeg), as PACS exports often are.
    """
    if photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise InputError(f"photometric must be MONOCHROME1 or MONOCHROME2, got {photometric!r}")
    if bits not in (8, 16):
        raise InputError(f"DICOM bits must be 8 or 16, got {bits}")
    p = patient if patient is not None else fake_patient(phantom.seed)
    sop_class = "1.2.840.10008.5.1.4.1.1.1.1"  # Digital X-Ray Image Storage - For Presentation
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = _uid(phantom.seed, "sop")
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(None, {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = _uid(phantom.seed, "study")
    ds.SeriesInstanceUID = _uid(phantom.seed, "series")
    ds.FrameOfReferenceUID = _uid(phantom.seed, "frame")
    ds.Modality = "DX"
    ds.ViewPosition = "PA"
    ds.BodyPartExamined = "CHEST"
    ds.Manufacturer = "cxr synthetic phantom"
    ds.SeriesDescription = "SYNTHETIC PHANTOM - not patient data"
    for key in ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "PatientAge", "PatientAddress",
                "PatientTelephoneNumbers", "InstitutionName", "InstitutionAddress", "ReferringPhysicianName",
                "PerformingPhysicianName", "OperatorsName", "AccessionNumber", "StudyID", "StudyDate", "StudyTime"):
        if key in p:
            setattr(ds, key, p[key])
    if "OtherPatientIDs" in p:
        ds.add_new((0x0010, 0x1000), "LO", p["OtherPatientIDs"])
    ds.SeriesDate = ds.AcquisitionDate = ds.ContentDate = p.get("StudyDate", "")
    ds.SeriesTime = ds.AcquisitionTime = ds.ContentTime = p.get("StudyTime", "")
    block = ds.private_block(0x0011, PRIVATE_CREATOR, create=True)
    block.add_new(0x01, "LO", p.get("PrivateValue", ""))
    ds.SeriesNumber, ds.InstanceNumber = 1, 1

    if bits == 16:
        arr = phantom.image.astype(np.uint16)
        maxval = 65535
    else:
        arr = (phantom.image >> 8).astype(np.uint8)
        maxval = 255
    stored = bits if bits_stored is None else int(bits_stored)
    if not 1 <= stored <= bits:
        raise InputError(f"bits_stored must be between 1 and {bits}, got {stored}")
    if stored < bits:
        arr = (arr >> (bits - stored)).astype(arr.dtype)
        maxval = 2**stored - 1
    if photometric == "MONOCHROME1":  # bright = low value: store inverted so it displays the same
        arr = (maxval - arr).astype(arr.dtype)
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.Rows, ds.Columns = arr.shape
    ds.BitsAllocated = bits
    ds.BitsStored = stored
    ds.HighBit = stored - 1
    ds.PixelRepresentation = 0
    ds.PixelSpacing = [0.14 * 512 / arr.shape[0]] * 2
    ds.PixelData = arr.tobytes()
    if jpeg2000:
        ds.compress(JPEG2000Lossless, arr, encoding_plugin="pylibjpeg")
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def write_dicom(phantom: Phantom, path: str | Path, *, photometric: str = "MONOCHROME2", bits: int = 16,
                patient: dict[str, str] | None = None) -> Path:
    """Write the phantom as DICOM with FAKE patient tags (``fake_patient(phantom.seed)`` unless given)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(dicom_bytes(phantom, photometric=photometric, bits=bits, patient=patient))
    return path


def phantom_digest(phantom: Phantom) -> str:
    """sha256 of the pixels and labels (used to check determinism)."""
    h = hashlib.sha256(phantom.image.tobytes())
    h.update(phantom.boxes.tobytes())
    h.update(phantom.labels.tobytes())
    return h.hexdigest()
