"""Bytes of an upload -> one normalized greyscale array, the bytes to store and a PNG rendition.

PNG and JPEG go through Pillow, DICOM through pydicom (compressed transfer syntaxes via the
pylibjpeg plugins: JPEG baseline/extended/lossless, JPEG-LS, JPEG 2000, RLE). DICOM pixels
go through the modality LUT (rescale slope/intercept), the VOI LUT or window, and
MONOCHROME1 inversion, so the detector always gets a 2-D float32 array in [0, 1] with
0 = black, whatever the source. DICOM is de-identified (:mod:`cxr.ingest.deid`) before the
bytes to store are produced; nothing identifying is put in an error message or a warning.
"""

from __future__ import annotations

import hashlib
import io
import logging
import warnings as _warnings
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from cxr.errors import InputError
from cxr.ingest import validate

CHEST_MODALITIES = frozenset({"CR", "DX", "DR", "RG"})
CHEST_BODY_PARTS = frozenset({"CHEST", "THORAX", "LUNG", "HEART"})
MIME = {"png": "image/png", "jpg": "image/jpeg", "dcm": "application/dicom"}


@dataclass
class DecodedUpload:
    """A validated upload, ready for the detector and the lake."""

    array: np.ndarray  # 2-D float32 in [0, 1]
    width: int
    height: int
    source_format: str  # png | jpeg | dicom
    stored_bytes: bytes  # de-identified DICOM, or the PNG/JPEG as uploaded
    extension: str  # png | jpg | dcm
    rendition_png: bytes  # 8-bit greyscale PNG of ``array``
    warnings: list[str] = field(default_factory=list)
    name: str = ""  # the upload's (validated) file name

    @cached_property
    def sha256(self) -> str:
        return hashlib.sha256(self.stored_bytes).hexdigest()

    @property
    def image_key(self) -> str:
        return f"images/{self.sha256[:2]}/{self.sha256}.{self.extension}"

    @property
    def rendition_key(self) -> str:
        return f"renditions/{self.sha256[:2]}/{self.sha256}.png"

    @property
    def content_type(self) -> str:
        return MIME[self.extension]


def decode_upload(name: str, data: bytes, settings) -> DecodedUpload:  # noqa: ANN001 - Settings
    """Validate, decode and (for DICOM) de-identify one upload; raise InputError with the reason."""
    validate.check_name(name)
    validate.check_size(data, settings.max_upload_bytes)
    fmt = validate.check_format(name, data)
    if fmt == "dicom":
        from cxr.ingest.deid import load_key

        array, stored, notes = decode_dicom(data, settings.max_pixels, load_key(settings))
    else:
        array, notes = decode_raster(data, fmt, settings.max_pixels)
        stored = data
    height, width = array.shape
    return DecodedUpload(
        array=array, width=width, height=height, source_format=fmt, stored_bytes=stored,
        extension=validate.STORED_EXTENSION[fmt], rendition_png=rendition(array), warnings=notes, name=name,
    )


def rendition(array: np.ndarray) -> bytes:
    """An 8-bit greyscale PNG of a [0, 1] array."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(to_uint8(array), "L").save(buf, format="PNG", compress_level=3)
    return buf.getvalue()


def to_uint8(array: np.ndarray) -> np.ndarray:
    return (np.clip(array, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


# -- PNG / JPEG --------------------------------------------------------------------------

_GREY_16 = ("I;16", "I;16B", "I;16L", "I;16N", "I")
_REFUSED_MODES = {
    "1": "a 1-bit black-and-white image",
    "P": "a palette (indexed-colour) image",
    "PA": "a palette (indexed-colour) image",
    "CMYK": "a CMYK colour image",
    "YCbCr": "a colour image (YCbCr)",
    "LAB": "a colour image (Lab)",
    "HSV": "a colour image (HSV)",
    "F": "a floating-point image",
}


def decode_raster(data: bytes, fmt: str, max_pixels: int) -> tuple[np.ndarray, list[str]]:
    """PNG/JPEG -> [0, 1] greyscale; dimensions are checked from the header before decoding."""
    from PIL import Image

    Image.MAX_IMAGE_PIXELS = max_pixels
    label = fmt.upper()
    notes: list[str] = []
    with _warnings.catch_warnings():
        _warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            im = Image.open(io.BytesIO(data), formats=["PNG"] if fmt == "png" else ["JPEG", "MPO"])
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise InputError(f"{label} is larger than the {max_pixels:,}-pixel limit (CXR_MAX_PIXELS; a decompression-bomb guard)") from None
        except Exception as exc:  # noqa: BLE001 - Pillow raises many types for bad headers
            raise InputError(f"corrupt {label} header ({_why(exc)})") from None
        validate.check_dimensions(im.width, im.height, max_pixels)
        if getattr(im, "n_frames", 1) > 1:
            raise InputError(f"{label} has {im.n_frames} frames (animated or multi-picture); upload a single image")
        if im.mode in _REFUSED_MODES:
            raise InputError(f"{label} is {_REFUSED_MODES[im.mode]}; upload a greyscale radiograph")
        try:
            im.load()
        except Exception as exc:  # noqa: BLE001 - truncated data, bad CRC, zlib errors
            raise InputError(f"corrupt or truncated {label} ({_why(exc)})") from None
    mode = im.mode
    if mode == "L":
        array = np.asarray(im, dtype=np.float32) / 255.0
    elif mode in _GREY_16:
        raw = np.asarray(im)
        if raw.min() < 0 or raw.max() > 65535:
            raise InputError(f"{label} has pixel values outside 16 bits")
        array = raw.astype(np.float32) / 65535.0
    elif mode in ("RGB", "RGBA", "LA"):
        px = np.asarray(im)
        colour = px[..., :-1] if mode in ("RGBA", "LA") else px
        if mode in ("RGBA", "LA") and int(px[..., -1].min()) < 255:
            raise InputError(f"{label} is transparent ({mode}); upload an opaque greyscale radiograph")
        if colour.shape[-1] == 3 and not (np.array_equal(colour[..., 0], colour[..., 1]) and np.array_equal(colour[..., 0], colour[..., 2])):
            raise InputError(f"{label} is a colour image ({mode}); upload a greyscale radiograph")
        array = colour[..., 0].astype(np.float32) / 255.0
        notes.append(f"{label} stored as {mode} with identical channels: read as greyscale")
    else:
        raise InputError(f"{label} has unsupported pixel mode {mode!r}; upload an 8- or 16-bit greyscale image")
    if im.info.get("exif") or any(k in im.info for k in ("comment", "Comment", "Description", "Author")):
        notes.append(f"{label} carries text/EXIF metadata; it is stored as uploaded")
    return np.ascontiguousarray(array, dtype=np.float32), notes


def _why(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:160]


# -- DICOM ---------------------------------------------------------------------------------

class _DropAll(logging.Filter):
    """pydicom's log records can quote attribute values (patient names...): none may reach a log."""

    def filter(self, record: logging.LogRecord) -> bool:
        return False


_DROP_PYDICOM = _DropAll()


def _quiet_pydicom() -> None:
    import pydicom.config

    pydicom.config.settings.reading_validation_mode = pydicom.config.IGNORE
    pydicom.config.settings.writing_validation_mode = pydicom.config.IGNORE
    log = logging.getLogger("pydicom")
    if _DROP_PYDICOM not in log.filters:
        log.addFilter(_DROP_PYDICOM)


def decode_dicom(data: bytes, max_pixels: int, key: bytes) -> tuple[np.ndarray, bytes, list[str]]:
    """DICOM -> ([0, 1] array, de-identified file bytes, warnings)."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    notes: list[str] = []
    _quiet_pydicom()
    # pydicom warns and logs with attribute values in the text; those must not reach any log.
    with _warnings.catch_warnings():
        _warnings.simplefilter("ignore")
        try:
            ds = pydicom.dcmread(io.BytesIO(data))
        except InvalidDicomError:
            raise InputError("not a valid DICOM file") from None
        except Exception as exc:  # noqa: BLE001 - truncated/garbled files raise many types
            raise InputError(f"unreadable DICOM file ({type(exc).__name__})") from None
        try:
            array = _dicom_pixels(ds, max_pixels)
        except InputError:
            raise
        except Exception as exc:  # noqa: BLE001 - decoder plugins raise many types
            ts = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
            ts_name = ts.name if ts is not None else "unknown"
            raise InputError(f"cannot decode DICOM pixel data (transfer syntax {ts_name}; {type(exc).__name__})") from None
        modality = str(ds.get("Modality", "") or "").upper()
        body = str(ds.get("BodyPartExamined", "") or "").upper()
        if modality and modality not in CHEST_MODALITIES:
            notes.append(f"DICOM modality is {modality}, not a radiograph (CR/DX): results may be meaningless")
        if body and body not in CHEST_BODY_PARTS:
            notes.append(f"DICOM body part is {body}, not CHEST: results may be meaningless")
        from cxr.ingest.deid import deidentify

        notes += deidentify(ds, key)
        buf = io.BytesIO()
        try:
            ds.save_as(buf, enforce_file_format=True)
        except Exception as exc:  # noqa: BLE001
            raise InputError(f"DICOM cannot be re-encoded after de-identification ({type(exc).__name__})") from None
    return array, buf.getvalue(), notes


def _dicom_pixels(ds, max_pixels: int) -> np.ndarray:  # noqa: ANN001 - pydicom Dataset
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    if "PixelData" not in ds:
        other = [k for k in ("FloatPixelData", "DoubleFloatPixelData") if k in ds]
        if other:
            raise InputError(f"DICOM has {other[0]} (float pixels), which is not a radiograph")
        raise InputError("DICOM file has no pixel data (e.g. a report or a DICOMDIR)")
    rows, cols = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    photometric = str(ds.get("PhotometricInterpretation", "") or "").upper()
    if frames > 1:
        raise InputError(f"multi-frame DICOM ({frames} frames); upload a single-frame radiograph")
    if samples != 1 or photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise InputError(f"colour DICOM ({photometric or '?'}, {samples} samples per pixel); upload a greyscale radiograph")
    validate.check_dimensions(cols, rows, max_pixels)
    bits = int(ds.get("BitsStored", 0) or 0)
    if not 1 <= bits <= 16:
        raise InputError(f"DICOM has {bits} bits stored per pixel; 8- to 16-bit images are supported")
    raw = ds.pixel_array
    if raw.shape != (rows, cols):
        raise InputError(f"DICOM pixel data has shape {raw.shape}, expected {(rows, cols)}")
    has_rescale = "RescaleSlope" in ds or "RescaleIntercept" in ds or "ModalityLUTSequence" in ds
    values = apply_modality_lut(raw, ds) if has_rescale else raw
    if "VOILUTSequence" in ds or "WindowCenter" in ds:
        lo, hi = _voi_range(ds)
        values = apply_voi_lut(values, ds, prefer_lut=True)
    elif has_rescale:
        lo, hi = float(np.min(values)), float(np.max(values))
    elif int(ds.get("PixelRepresentation", 0) or 0) == 0:
        lo, hi = 0.0, float(2**bits - 1)
    else:
        lo, hi = float(-(2 ** (bits - 1))), float(2 ** (bits - 1) - 1)
    values = values.astype(np.float64)
    array = (values - lo) / (hi - lo) if hi > lo else np.zeros_like(values)
    array = np.clip(array, 0.0, 1.0)
    if photometric == "MONOCHROME1":  # 0 is white: invert so 0 = black everywhere downstream
        array = 1.0 - array
    return np.ascontiguousarray(array, dtype=np.float32)


def _voi_range(ds) -> tuple[float, float]:  # noqa: ANN001
    """Output range of pydicom's apply_voi_lut for ``ds`` (PS3.3 C.11.2), to map it to [0, 1]."""
    if "VOILUTSequence" in ds and ds.VOILUTSequence:
        desc = ds.VOILUTSequence[0].LUTDescriptor
        nbits = int(desc[2])
        return 0.0, float(2**nbits - 1)
    bits = int(ds.BitsStored)
    if ds.get("ModalityLUTSequence"):
        lo, hi = 0.0, float(2 ** int(ds.ModalityLUTSequence[0].LUTDescriptor[2]) - 1)
    elif int(ds.get("PixelRepresentation", 0) or 0) == 0:
        lo, hi = 0.0, float(2**bits - 1)
    else:
        lo, hi = float(-(2 ** (bits - 1))), float(2 ** (bits - 1) - 1)
    slope, intercept = ds.get("RescaleSlope"), ds.get("RescaleIntercept")
    if slope is not None and intercept is not None:
        lo, hi = lo * float(slope) + float(intercept), hi * float(slope) + float(intercept)
    return lo, hi
