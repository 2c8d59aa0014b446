"""Pixels: every image source becomes one 2-D float32 array in [0, 1] with 0 = black.

Serving (the ingest path, the dashboard, ``cxr predict``) and training and evaluation
(:mod:`cxr.model.datasets`) read pixels only through this module, so a model sees the same
pixels when it is trained as when it is served.

- DICOM: the modality LUT (rescale slope/intercept or a LUT), then the VOI LUT or window,
  then MONOCHROME1 inversion (:func:`dicom_to_array`). Compressed transfer syntaxes decode
  through pydicom's pixel handlers (pylibjpeg: JPEG, JPEG-LS, RLE; JPEG 2000 through the
  multi-threaded imagecodecs plugin of :mod:`cxr.model.codecs` when it is installed). For 8- and
  16-bit stored values the display mapping is computed once per possible value and looked up
  (:func:`_display_lut`): the same float64 arithmetic, so the same float32 pixels, without
  converting every pixel through float64.
- PNG / JPEG (:func:`raster_to_array`): 8- and 16-bit greyscale as they are. Colour
  *encodings* of a greyscale image (palette, RGB/RGBA with equal channels, CMYK, YCbCr...)
  are converted to luminance with a note saying so; a real colour picture (channels that
  differ by more than :data:`COLOUR_TOLERANCE`) is refused.

Errors are :class:`~cxr.errors.InputError` with one line; none quotes a DICOM attribute value.
"""

from __future__ import annotations

import io
import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import pydicom
import pydicom.config
import pydicom.uid
from PIL import Image
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.pixels import apply_modality_lut, apply_voi_lut
from pydicom.pixels.decoders.base import get_decoder

from cxr.errors import InputError
from cxr.model import codecs

MIN_SIDE = 16  # smaller than this is no radiograph (and breaks the detector's resize)

#: A pixel counts as grey when its channels lie within this many 8-bit levels of each other
#: (for 99 % of the pixels): lossy JPEG chroma and CMYK round trips stay well inside it, a
#: colour photograph does not.
COLOUR_TOLERANCE = 12
_GREY_SHARE = 0.99

_GREY_16 = ("I;16", "I;16B", "I;16L", "I;16N")
#: Modes whose pixels are a colour encoding: converted to RGB, then checked for colour.
_COLOUR_ENCODINGS = {"P": "palette", "PA": "palette", "CMYK": "CMYK", "YCbCr": "YCbCr", "LAB": "Lab",
                     "HSV": "HSV", "RGB": "RGB", "RGBA": "RGBA", "LA": "LA", "RGBX": "RGBX"}


def check_dimensions(width: int, height: int, max_pixels: int) -> None:
    """Refuse images too large to decode safely or too small to be a radiograph."""
    if width <= 0 or height <= 0:
        raise InputError(f"image has no pixels ({width}x{height})")
    if width * height > max_pixels:
        raise InputError(
            f"image is {width}x{height} = {width * height:,} pixels, more than the {max_pixels:,} limit "
            "(CXR_MAX_PIXELS; a decompression-bomb guard)"
        )
    if min(width, height) < MIN_SIDE:
        raise InputError(f"image is {width}x{height}; both sides must be at least {MIN_SIDE} pixels")


def to_uint8(array: np.ndarray) -> np.ndarray:
    """A [0, 1] array as 8-bit grey levels (rounded)."""
    return (np.clip(array, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


# -- PNG / JPEG ------------------------------------------------------------------------------------
def _grey_share(rgb: np.ndarray) -> float:
    """Share of pixels whose channels lie within COLOUR_TOLERANCE of each other (a strided sample)."""
    step = max(1, int(np.sqrt(rgb.shape[0] * rgb.shape[1] / 250_000)))
    sample = rgb[::step, ::step].astype(np.int16)
    spread = sample.max(axis=-1) - sample.min(axis=-1)
    return float(np.mean(spread <= COLOUR_TOLERANCE))


def raster_to_array(im: Image.Image, label: str) -> tuple[np.ndarray, list[str]]:
    """A loaded Pillow image -> ([0, 1] greyscale array, notes on what was converted).

    ``label`` (PNG, JPEG) names the format in messages.
    """
    mode = im.mode
    if mode == "L":
        return np.asarray(im, dtype=np.float32) / 255.0, []
    if mode in _GREY_16 or mode == "I":
        raw = np.asarray(im)
        if raw.min() < 0 or raw.max() > 65535:
            raise InputError(f"{label} has pixel values outside 16 bits")
        return raw.astype(np.float32) / 65535.0, []
    if mode == "1":
        raise InputError(f"{label} is a 1-bit black-and-white image; upload a greyscale radiograph")
    if mode not in _COLOUR_ENCODINGS:
        raise InputError(f"{label} has unsupported pixel mode {mode!r}; upload an 8- or 16-bit greyscale image")
    what = _COLOUR_ENCODINGS[mode]
    if mode in ("P", "PA") and ("transparency" in im.info or mode == "PA"):
        im = im.convert("RGBA")
    elif mode == "P":
        im = im.convert("RGB")
    if im.mode in ("RGBA", "LA", "PA"):
        alpha = np.asarray(im.getchannel("A"))
        if int(alpha.min()) < 255:
            raise InputError(f"{label} is transparent ({mode}); upload an opaque greyscale radiograph")
    if im.mode == "LA":
        return np.asarray(im.getchannel("L"), dtype=np.float32) / 255.0, [f"{label} stored as LA: read as greyscale"]
    rgb = im.convert("RGB")
    if _grey_share(np.asarray(rgb)) < _GREY_SHARE:
        raise InputError(f"{label} is a colour image ({what}); upload a greyscale radiograph")
    array = np.asarray(rgb.convert("L"), dtype=np.float32) / 255.0
    return array, [f"{label} stored as {what} colour encoding of a greyscale image: converted to luminance"]


def decode_raster(data: bytes, fmt: str, max_pixels: int) -> tuple[np.ndarray, list[str]]:
    """PNG/JPEG bytes -> [0, 1] greyscale; dimensions are checked from the header before decoding."""
    label = fmt.upper()
    with _pillow_bomb_guard(max_pixels):
        try:
            im = Image.open(io.BytesIO(data), formats=["PNG"] if fmt == "png" else ["JPEG", "MPO"])
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise InputError(f"{label} is larger than the {max_pixels:,}-pixel limit "
                             "(CXR_MAX_PIXELS; a decompression-bomb guard)") from None
        except Exception as exc:  # noqa: BLE001 - Pillow raises many types for bad headers
            raise InputError(f"corrupt {label} header ({_why(exc)})") from None
        check_dimensions(im.width, im.height, max_pixels)
        if getattr(im, "n_frames", 1) > 1:
            raise InputError(f"{label} has {im.n_frames} frames (animated or multi-picture); upload a single image")
        try:
            im.load()
        except Exception as exc:  # noqa: BLE001 - truncated data, bad CRC, zlib errors
            raise InputError(f"corrupt or truncated {label} ({_why(exc)})") from None
    array, notes = raster_to_array(im, label)
    if im.info.get("exif") or any(k in im.info for k in ("comment", "Comment", "Description", "Author")):
        notes.append(f"{label} carries text/EXIF metadata; it is stored as uploaded")
    return np.ascontiguousarray(array, dtype=np.float32), notes


@contextmanager
def _pillow_bomb_guard(max_pixels: int) -> Iterator[None]:
    """Pillow's decompression-bomb limit at ``max_pixels``, its warning raised as an error."""
    old = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = max_pixels
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            yield
    finally:
        Image.MAX_IMAGE_PIXELS = old


def _why(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:160]


def read_raster(data: bytes, max_pixels: int = 2**31) -> np.ndarray:
    """PNG or JPEG bytes -> the [0, 1] array (format by content), for readers that need no notes."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return decode_raster(data, "png", max_pixels)[0]
    return decode_raster(data, "jpeg", max_pixels)[0]


# -- DICOM -----------------------------------------------------------------------------------------
class _DropAll(logging.Filter):
    """pydicom's log records can quote attribute values (patient names...): none may reach a log."""

    def filter(self, record: logging.LogRecord) -> bool:
        return False


_DROP_PYDICOM = _DropAll()


@contextmanager
def quiet_pydicom() -> Iterator[None]:
    """pydicom's warnings and log records, which can quote attribute values, never reach a log."""
    pydicom.config.settings.reading_validation_mode = pydicom.config.IGNORE
    pydicom.config.settings.writing_validation_mode = pydicom.config.IGNORE
    log = logging.getLogger("pydicom")
    if _DROP_PYDICOM not in log.filters:
        log.addFilter(_DROP_PYDICOM)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


#: Transfer syntaxes without compressed pixel data: decoded by pydicom itself.
_NATIVE_SYNTAXES = (pydicom.uid.ImplicitVRLittleEndian, pydicom.uid.ExplicitVRLittleEndian,
                    pydicom.uid.DeflatedExplicitVRLittleEndian, pydicom.uid.ExplicitVRBigEndian)


def decodable_transfer_syntaxes() -> tuple[str, ...]:
    """Every transfer syntax whose pixel data this installation decodes: the uncompressed ones and
    each compressed one with a decoder plugin present (pylibjpeg, pyjpegls, Pillow: JPEG, JPEG-LS,
    JPEG 2000, HTJ2K, RLE). The DICOM listener accepts images in exactly these."""
    out = list(_NATIVE_SYNTAXES)
    for uid in pydicom.uid.AllTransferSyntaxes:
        if uid in out or not uid.is_compressed:
            continue
        try:
            if get_decoder(uid).is_available:
                out.append(uid)
        except NotImplementedError:  # no decoder exists for the syntax at all (MPEG, JPIP...)
            continue
    return tuple(str(u) for u in out)


def parse_dicom(data: bytes) -> Dataset:
    """DICOM Part 10 bytes -> a pydicom Dataset (in memory), or a one-line InputError."""
    with quiet_pydicom():
        try:
            return pydicom.dcmread(io.BytesIO(data))
        except InvalidDicomError:
            raise InputError("not a valid DICOM file") from None
        except Exception as exc:  # noqa: BLE001 - truncated/garbled files raise many types
            raise InputError(f"unreadable DICOM file ({type(exc).__name__})") from None


def dicom_to_array(ds: Dataset, max_pixels: int = 2**31, *, threads: int = 1) -> np.ndarray:
    """A single-frame greyscale DICOM's display pixels as [0, 1] float32 (0 = black).

    ``threads``: how many threads one JPEG 2000 decode may use (0: every core of this process).
    """
    with quiet_pydicom():
        try:
            return _dicom_pixels(ds, max_pixels, threads)
        except InputError:
            raise
        except Exception as exc:  # noqa: BLE001 - decoder plugins raise many types
            ts = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
            ts_name = ts.name if ts is not None else "unknown"
            raise InputError(f"cannot decode DICOM pixel data (transfer syntax {ts_name}; {type(exc).__name__})") from None


def _check_greyscale_frame(ds: Dataset, max_pixels: int) -> tuple[int, int, int]:
    """(rows, columns, bits stored) of a single-frame greyscale image, or the reason it is not one."""
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
    check_dimensions(cols, rows, max_pixels)
    bits = int(ds.get("BitsStored", 0) or 0)
    if not 1 <= bits <= 16:
        raise InputError(f"DICOM has {bits} bits stored per pixel; 8- to 16-bit images are supported")
    return rows, cols, bits


def decode_stored(ds: Dataset, threads: int = 1) -> np.ndarray:
    """The stored values of a single-frame image (pydicom's ``pixel_array``), by the fastest correct decoder."""
    ts = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    options = codecs.decoding_options(ts, threads) if ts is not None else {}
    if not options:
        return ds.pixel_array
    arr, _meta = get_decoder(ts).as_array(ds, **options)
    return arr


def _dicom_pixels(ds: Dataset, max_pixels: int, threads: int = 1) -> np.ndarray:
    rows, cols, bits = _check_greyscale_frame(ds, max_pixels)
    raw = decode_stored(ds, threads)
    if raw.shape != (rows, cols):
        raise InputError(f"DICOM pixel data has shape {raw.shape}, expected {(rows, cols)}")
    if raw.dtype.kind in "ui" and raw.dtype.itemsize <= 2:
        lut, index = _display_lut(ds, raw, bits)
        return np.ascontiguousarray(lut[index])
    return _display(raw, ds, bits)


def _display_lut(ds: Dataset, raw: np.ndarray, bits: int) -> tuple[np.ndarray, np.ndarray]:
    """(lut, index): ``lut[index]`` equals :func:`_display` of ``raw``, value for value.

    ``lut`` holds :func:`_display` of every value the dtype can hold (256 or 65,536), ``index`` is
    ``raw`` as positions in it. The one data-dependent step (the min/max of the rescaled values
    when there is no VOI) is taken over the values present in ``raw``.
    """
    info = np.iinfo(raw.dtype)
    domain = np.arange(info.min, info.max + 1, dtype=raw.dtype)
    if info.min < 0:  # two's complement: the unsigned view with the sign bit flipped is value - min
        unsigned = raw.view(np.dtype(f"u{raw.dtype.itemsize}"))
        index = unsigned ^ unsigned.dtype.type(1 << (8 * raw.dtype.itemsize - 1))
    else:
        index = raw
    present = None
    if not ("VOILUTSequence" in ds or "WindowCenter" in ds) and _has_rescale(ds):
        present = np.bincount(index.ravel(), minlength=domain.size) > 0
    return _display(domain, ds, bits, present), index


def _has_rescale(ds: Dataset) -> bool:
    return "RescaleSlope" in ds or "RescaleIntercept" in ds or "ModalityLUTSequence" in ds


def _display(raw: np.ndarray, ds: Dataset, bits: int, present: np.ndarray | None = None) -> np.ndarray:
    """Stored values -> [0, 1] float32 display values; ``present`` restricts the rescaled min/max."""
    has_rescale = _has_rescale(ds)
    values = apply_modality_lut(raw, ds) if has_rescale else raw
    if "VOILUTSequence" in ds or "WindowCenter" in ds:
        lo, hi = _voi_range(ds)
        values = apply_voi_lut(values, ds, prefer_lut=True)
    elif has_rescale:
        seen = values if present is None else values[present]
        lo, hi = float(np.min(seen)), float(np.max(seen))
    else:
        lo, hi = _stored_range(ds, bits)
    values = values.astype(np.float64)
    array = (values - lo) / (hi - lo) if hi > lo else np.zeros_like(values)
    array = np.clip(array, 0.0, 1.0)
    if str(ds.get("PhotometricInterpretation", "")).upper() == "MONOCHROME1":  # 0 is white: invert
        array = 1.0 - array
    return np.ascontiguousarray(array, dtype=np.float32)


def _stored_range(ds: Dataset, bits: int) -> tuple[float, float]:
    if int(ds.get("PixelRepresentation", 0) or 0) == 0:
        return 0.0, float(2**bits - 1)
    return float(-(2 ** (bits - 1))), float(2 ** (bits - 1) - 1)


def _voi_range(ds: Dataset) -> tuple[float, float]:
    """Output range of pydicom's apply_voi_lut for ``ds`` (PS3.3 C.11.2), to map it to [0, 1]."""
    if "VOILUTSequence" in ds and ds.VOILUTSequence:
        desc = ds.VOILUTSequence[0].LUTDescriptor
        nbits = int(desc[2])
        return 0.0, float(2**nbits - 1)
    if ds.get("ModalityLUTSequence"):
        lo, hi = 0.0, float(2 ** int(ds.ModalityLUTSequence[0].LUTDescriptor[2]) - 1)
    else:
        lo, hi = _stored_range(ds, int(ds.BitsStored))
    slope, intercept = ds.get("RescaleSlope"), ds.get("RescaleIntercept")
    if slope is not None and intercept is not None:
        lo, hi = lo * float(slope) + float(intercept), hi * float(slope) + float(intercept)
    return lo, hi
