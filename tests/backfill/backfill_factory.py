"""Backfill test data: small phantom DICOMs with JPEG 2000 pixel data (fake patient tags)."""

from __future__ import annotations

from cxr.model.phantoms import dicom_bytes, generate_phantom


def j2k_dicom(seed: int, size: int = 192) -> bytes:
    """A phantom DICOM (fake patient tags) with 12-bit JPEG 2000 lossless pixel data, as a CR export."""
    return dicom_bytes(generate_phantom(seed, size), bits_stored=12, jpeg2000=True)
