"""Guards applied to every upload before (and while) it is decoded.

Each check raises :class:`cxr.errors.InputError` with one line a person can act on.
The checks are cheap and run on the raw bytes or the file name, never on decoded pixels
(the image-header checks are :func:`cxr.model.pixels.check_dimensions`), so a decompression
bomb is refused before it is inflated.
"""

from __future__ import annotations

import unicodedata
from pathlib import PurePosixPath

from cxr.errors import InputError

#: Extensions we accept, by the format their content must have.
EXTENSIONS = {
    ".png": "png",
    ".jpg": "jpeg",
    ".jpeg": "jpeg",
    ".jpe": "jpeg",
    ".dcm": "dicom",
    ".dicom": "dicom",
    "": None,  # no extension: the content decides
}
#: Extension of the stored object per format.
STORED_EXTENSION = {"png": "png", "jpeg": "jpg", "dicom": "dcm"}

MAX_NAME_CHARS = 255  # image.original_name is VARCHAR(255)


def check_name(name: str) -> str:
    """Return ``name`` if it is a plain file name (no directories, no control characters).

    Names are only ever stored as data (bound SQL parameters), never used as paths, but a
    name that tries to climb directories or hides control characters is refused outright.
    """
    if not isinstance(name, str) or not name.strip():
        raise InputError("empty file name")
    if len(name) > MAX_NAME_CHARS:
        raise InputError(f"file name longer than {MAX_NAME_CHARS} characters")
    if any(unicodedata.category(ch) in ("Cc", "Cf", "Cs") for ch in name):
        raise InputError("file name contains control characters")
    if "/" in name or "\\" in name or name in (".", "..") or name.startswith(".."):
        raise InputError(f"file name {safe_repr(name)} contains a path; give a plain file name")
    return name


def safe_repr(name: str, limit: int = 80) -> str:
    """A short, printable rendering of a user-given name for error messages."""
    text = name if len(name) <= limit else name[: limit - 1] + "…"
    return repr(text)


def check_size(data: bytes, max_bytes: int) -> None:
    if len(data) == 0:
        raise InputError("empty file")
    if len(data) > max_bytes:
        raise InputError(f"file is {len(data):,} bytes, more than the {max_bytes:,}-byte limit (CXR_MAX_UPLOAD_BYTES)")


def sniff(data: bytes) -> str | None:
    """The format the bytes really have: 'png', 'jpeg', 'dicom' or None."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if data.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if len(data) >= 132 and data[128:132] == b"DICM":
        return "dicom"
    return None


def describe_unknown(data: bytes) -> str:
    """A friendly name for common non-image content, for the error line."""
    magic = {
        b"GIF8": "a GIF image",
        b"BM": "a BMP image",
        b"II*\x00": "a TIFF image",
        b"MM\x00*": "a TIFF image",
        b"\x00\x00\x00\x0cjP  ": "a JPEG 2000 image",
        b"\xff\x4f\xff\x51": "a JPEG 2000 codestream",
        b"RIFF": "a RIFF/WebP file",
        b"PK\x03\x04": "a ZIP archive",
        b"%PDF": "a PDF document",
        b"\x1f\x8b": "a gzip archive",
        b"\x7fELF": "an executable",
        b"MZ": "an executable",
    }
    for prefix, what in magic.items():
        if data.startswith(prefix):
            return what
    head = data[:256].lstrip().lower()
    if head.startswith((b"<svg", b"<?xml", b"<!doctype", b"<html")):
        return "an XML/HTML/SVG document"
    return "not an image"


def check_format(name: str, data: bytes) -> tuple[str, list[str]]:
    """The upload's format, by its content; a note when its extension names another image format.

    Viewers and office tools routinely save a JPEG as ``.png`` and the like: the bytes decide.
    An extension that names no image format at all (``.exe``) is still refused.
    """
    ext = PurePosixPath(name).suffix.lower()
    if ext not in EXTENSIONS:
        raise InputError(f"unsupported file type {ext!r}: upload a PNG, JPEG or DICOM (.png .jpg .jpeg .dcm)")
    fmt = sniff(data)
    if fmt is None:
        raise InputError(f"not a PNG, JPEG or DICOM file ({describe_unknown(data)})")
    claimed = EXTENSIONS[ext]
    notes = [f"the file is named {ext} but holds a {fmt.upper()}: decoded as {fmt.upper()}"] \
        if claimed is not None and claimed != fmt else []
    return fmt, notes
