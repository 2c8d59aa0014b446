"""File names without identifiers: what cxr stores, logs and shows instead of an upload's own name.

Hospital exports name files after the patient (``1234567_DOE_JOHN_CXR.dcm``). Before a name is
stored (``image.original_name``), logged or shown:

- every token of the name equal to one of the DICOM header's identifiers (the parts of
  PatientName, PatientID, OtherPatientIDs, AccessionNumber, StudyID and the dates) is removed;
- every run of six or more digits is masked with ``#`` (MRNs, accession numbers and dates
  hide in names of PNG and JPEG files too, where there is no header to compare with).

Tokens are the parts between ``_ - . , ^ + ~ ( ) [ ]`` and white space; the comparison ignores
case. The identifiers themselves live only in memory, for the call.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import PurePath

from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

DIGIT_RUN = re.compile(r"\d{6,}")
_SEPARATOR = re.compile(r"[_\-.,^=+~()\[\]\s]+")
#: Header attributes whose values must never appear in a stored, logged or shown name.
IDENTIFYING_KEYWORDS = ("PatientName", "PatientID", "OtherPatientIDs", "OtherPatientNames", "PatientBirthName",
                        "PatientMotherBirthName", "AccessionNumber", "StudyID", "PatientBirthDate", "StudyDate",
                        "SeriesDate", "AcquisitionDate", "ContentDate", "InstanceCreationDate")
PLACEHOLDER = "upload"


def header_identifiers(ds: Dataset) -> frozenset[str]:
    """The identifying values of a DICOM header as lower-case name tokens (kept in memory only)."""
    tokens: set[str] = set()
    for keyword in IDENTIFYING_KEYWORDS:
        value = ds.get(keyword)
        if value is None or value == "":
            continue
        for item in value if isinstance(value, MultiValue) else [value]:
            text = str(item).strip().lower()
            tokens.add(text)  # the value as a whole, and each of its parts
            tokens.update(t for t in _SEPARATOR.split(text) if len(t) >= 2)
    return frozenset(tokens)


def _mask_digits(text: str) -> str:
    return DIGIT_RUN.sub(lambda m: "#" * len(m.group()), text)


def mask_digits(text: str) -> str:
    """``text`` (a URL, a folder) with every run of six or more digits masked with ``#``."""
    return _mask_digits(text)


def mask_name(name: str, identifiers: Iterable[str] = ()) -> str:
    """``name`` with identifier tokens removed and digit runs masked; never empty.

    A name with no identifier token keeps its spelling (only its digit runs are masked); one
    that had tokens removed is rebuilt from the tokens left, joined by ``_``.
    """
    banned = {i.lower() for i in identifiers}
    stem, dot, ext = name.rpartition(".")
    if not dot or not stem:
        stem, ext = name, ""
    tokens = [t for t in _SEPARATOR.split(stem) if t]
    if banned and any(t.lower() in banned for t in tokens):
        stem = "_".join(t for t in tokens if t.lower() not in banned)
    stem = _mask_digits(stem) or PLACEHOLDER
    return f"{stem}.{_mask_digits(ext)}" if ext else stem


def mask_path(path: str | PurePath, identifiers: Iterable[str] = ()) -> str:
    """A path for messages and summaries: digit runs masked everywhere, identifiers removed from the file name."""
    p = PurePath(path)
    parent = _mask_digits(str(p.parent)) if str(p.parent) != "." else ""
    return str(PurePath(parent, mask_name(p.name, identifiers))) if parent else mask_name(p.name, identifiers)
