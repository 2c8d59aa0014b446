"""View selection: which radiographs the detector reads, decided from the header's view attributes.

The demo detector (and the seed's) reads **frontal** chest radiographs (PA or AP). A lateral view
is stored like any image, but the detector does not run on it; its transaction records why
(``transaction.skip_reason``). The rule, applied in :func:`cxr.ingest.pipeline.detect` for every
source (files, the dashboard, the DICOM network, the lake-loading drop):

1. **ViewPosition** (0018,5101) ``LL`` or ``RL`` (left / right lateral, PS3.3 C.8.11.5.1.1) is a
   lateral view. ``AP`` and ``PA`` are frontal; the decubitus positions ``LLD`` / ``RLD`` are frontal
   projections of a patient lying on one side, and the obliques ``LLO`` / ``RLO`` are not lateral:
   both run.
2. Without a ViewPosition, the first item of **ViewCodeSequence** (0054,0220) decides: the SNOMED CT
   codes of a lateral projection (CID 4010 / CID 501: 399173006 left lateral, 399198007 right
   lateral, 49370004 lateral, 399118008 / 399297009 left / right lateral projection) are a lateral
   view; anything else is not.
3. **ImageLaterality** (0020,0062) and **Laterality** (0020,0060) are *not* used: they say which of a
   paired body part (left or right breast, hand, knee) is imaged, and for a chest they are ``U``
   (unpaired) or ``B`` (both) whatever the projection. A lateral chest radiograph is not marked by
   them, so reading them as a view would refuse frontal images that some modalities mark ``L``/``R``.
4. PNG and JPEG uploads carry no view attributes: they are read as frontal.

The view attributes are technical values (CS and coded values), never patient data.
"""

from __future__ import annotations

from pydicom.dataset import Dataset

LATERAL_POSITIONS = frozenset({"LL", "RL"})
#: (CodeValue, CodingSchemeDesignator) of a lateral projection in ViewCodeSequence.
LATERAL_CODES = frozenset({("399173006", "SCT"), ("399198007", "SCT"), ("49370004", "SCT"),
                           ("399118008", "SCT"), ("399297009", "SCT")})
#: SNOMED CT is written "SRT" in older DICOM files (before 2019).
_SCHEME_ALIASES = {"SRT": "SCT", "SNM3": "SCT"}


def view_attributes(ds: Dataset) -> tuple[str | None, tuple[str, str] | None]:
    """``(ViewPosition, (CodeValue, scheme) of ViewCodeSequence[0])`` of a header, each None when absent."""
    position = str(ds.get("ViewPosition", "") or "").strip().upper() or None
    code = None
    seq = ds.get("ViewCodeSequence")
    if seq:
        item = seq[0]
        value = str(item.get("CodeValue", "") or "").strip()
        scheme = str(item.get("CodingSchemeDesignator", "") or "").strip().upper()
        if value:
            code = (value, _SCHEME_ALIASES.get(scheme, scheme))
    return position, code


def skip_reason(view_position: str | None, view_code: tuple[str, str] | None) -> str | None:
    """Why the detector must not run on an image with these view attributes, or None when it runs."""
    if view_position:
        if view_position in LATERAL_POSITIONS:
            return f"lateral view (ViewPosition {view_position}): the detector reads frontal chest radiographs only"
        return None
    if view_code is not None and view_code in LATERAL_CODES:
        return (f"lateral view (ViewCodeSequence {view_code[1]} {view_code[0]}): "
                "the detector reads frontal chest radiographs only")
    return None
