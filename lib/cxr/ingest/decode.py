"""Bytes of an upload -> one normalized greyscale array, the bytes to store and a PNG rendition.

The format is decided by the content (:func:`cxr.ingest.validate.check_format`), the pixels by
:mod:`cxr.model.pixels` (the same function training reads pixels with). DICOM is de-identified
(:mod:`cxr.dicom.deid`) before the bytes to store are produced, and the upload's file name loses
every token equal to a header identifier (:mod:`cxr.ingest.names`); nothing identifying is put
in an error message or a warning.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
from pydicom.dataset import Dataset

from cxr.config import Settings
from cxr.dicom.deid import deidentify, keyed_hash, load_key, provenance_keys
from cxr.errors import InputError
from cxr.ingest import names, validate, views
from cxr.model.codecs import encode_png_grey
from cxr.model.drift import intensity_stats
from cxr.model.pixels import decode_raster, dicom_to_array, parse_dicom, quiet_pydicom, to_uint8
from cxr.stores import layout

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
    name: str = ""  # the upload's file name, identifiers removed (names.mask_name)
    upload_key: str | None = None  # keyed hash of the bytes as uploaded (dicom.deid.keyed_hash)
    study_key: str | None = None  # keyed hash of the StudyInstanceUID (DICOM only)
    patient_key: str | None = None  # keyed hash of the PatientID (DICOM only)
    intensity_mean: float | None = None  # of ``array`` (model.drift.intensity_stats): drift monitoring
    intensity_std: float | None = None
    view_position: str | None = None  # DICOM ViewPosition (AP, PA, LL, RL...), None when absent (views.py)
    view_code: tuple[str, str] | None = None  # (CodeValue, scheme) of ViewCodeSequence[0], None when absent

    @cached_property
    def sha256(self) -> str:
        return hashlib.sha256(self.stored_bytes).hexdigest()

    @property
    def image_key(self) -> str:
        return layout.image_key(self.sha256, self.extension)

    @property
    def rendition_key(self) -> str:
        return layout.rendition_key(self.sha256)

    @property
    def content_type(self) -> str:
        return MIME[self.extension]


def decode_upload(name: str, data: bytes, settings: Settings) -> DecodedUpload:
    """Validate, decode and (for DICOM) de-identify one upload; raise InputError with the reason."""
    validate.check_name(name)
    validate.check_size(data, settings.max_upload_bytes)
    fmt, notes = validate.check_format(name, data)
    key = load_key(settings)
    if fmt == "dicom":
        return _decode_dicom(parse_dicom(data), settings, key, name=name, original=data, notes=notes)
    array, raster_notes = decode_raster(data, fmt, settings.max_pixels)
    height, width = array.shape
    mean, std = intensity_stats(array)
    return DecodedUpload(
        array=array, width=width, height=height, source_format=fmt, stored_bytes=data,
        extension=validate.STORED_EXTENSION[fmt], rendition_png=rendition(array), warnings=notes + raster_notes,
        name=names.mask_name(name), upload_key=keyed_hash(key, "upload", data),
        intensity_mean=mean, intensity_std=std,
    )


def decode_received(ds: Dataset, settings: Settings, *, original: bytes) -> DecodedUpload:
    """A DICOM dataset received over the network (identified, in memory, ``ds.file_meta`` set) ->
    the same :class:`DecodedUpload` as an uploaded DICOM file, by the same steps (validate the
    size, decode, de-identify). ``original`` is the encoded dataset as it was received (for
    ``upload_key``); ``ds`` is de-identified in place. There is no file name.
    """
    validate.check_size(original, settings.max_upload_bytes)
    return _decode_dicom(ds, settings, load_key(settings), name="", original=original, notes=[])


def _decode_dicom(ds: Dataset, settings: Settings, key: bytes, *, name: str, original: bytes,
                  notes: list[str]) -> DecodedUpload:
    """The one DICOM path of uploads, files and the network: provenance keys and view attributes
    from the identified header, then pixels and de-identified bytes (:func:`decode_dataset`)."""
    keys = provenance_keys(ds, key)
    view_position, view_code = views.view_attributes(ds)
    array, stored, dicom_notes, identifiers = decode_dataset(ds, settings.max_pixels, key,
                                                             threads=settings.decode_threads)
    height, width = array.shape
    mean, std = intensity_stats(array)
    return DecodedUpload(
        array=array, width=width, height=height, source_format="dicom", stored_bytes=stored,
        extension=validate.STORED_EXTENSION["dicom"], rendition_png=rendition(array), warnings=notes + dicom_notes,
        name=names.mask_name(name, identifiers) if name else "", upload_key=keyed_hash(key, "upload", original),
        view_position=view_position, view_code=view_code, intensity_mean=mean, intensity_std=std, **keys,
    )


def rendition(array: np.ndarray) -> bytes:
    """An 8-bit greyscale PNG of a [0, 1] array (the fast lossless encoder of :mod:`cxr.model.codecs`)."""
    return encode_png_grey(to_uint8(array))


# -- DICOM ---------------------------------------------------------------------------------------
def view_notes(ds: Dataset) -> list[str]:
    """Warnings about what the instance shows (not a radiograph, not the chest); never a PHI value."""
    notes = []
    modality = str(ds.get("Modality", "") or "").upper()
    body = str(ds.get("BodyPartExamined", "") or "").upper()
    if modality and modality not in CHEST_MODALITIES:
        notes.append(f"DICOM modality is {modality}, not a radiograph (CR/DX): results may be meaningless")
    if body and body not in CHEST_BODY_PARTS:
        notes.append(f"DICOM body part is {body}, not CHEST: results may be meaningless")
    return notes


def decode_dataset(ds: Dataset, max_pixels: int, key: bytes, *,
                   threads: int = 1) -> tuple[np.ndarray, bytes, list[str], frozenset[str]]:
    """An identified DICOM dataset (in memory) -> ([0, 1] array, de-identified file bytes, warnings,
    the header's identifier tokens). ``ds`` is de-identified in place. ``threads``: for a JPEG 2000
    decode (0: every core).

    The identifier tokens (for masking the file name) stay in memory; nothing else leaves
    this function identified.
    """
    array = dicom_to_array(ds, max_pixels, threads=threads)
    identifiers = names.header_identifiers(ds)
    notes = view_notes(ds) + deidentify(ds, key)
    buf = io.BytesIO()
    with quiet_pydicom():
        try:
            ds.save_as(buf, enforce_file_format=True)
        except Exception as exc:  # noqa: BLE001 - pydicom's writers raise many types
            raise InputError(f"DICOM cannot be re-encoded after de-identification ({type(exc).__name__})") from None
    return array, buf.getvalue(), notes, identifiers
