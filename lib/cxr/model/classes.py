"""Class lists. The seed's five are the default; VinDr-CXR's 14 are available by name."""

from __future__ import annotations

from cxr.errors import InputError

SEED_CLASSES: tuple[str, ...] = ("Aortic enlargement", "Cardiomegaly", "ILD", "Infiltration", "Nodule/Mass")

VINDR_CXR_CLASSES: tuple[str, ...] = (
    "Aortic enlargement", "Atelectasis", "Calcification", "Cardiomegaly", "Consolidation", "ILD",
    "Infiltration", "Lung Opacity", "Nodule/Mass", "Other lesion", "Pleural effusion",
    "Pleural thickening", "Pneumothorax", "Pulmonary fibrosis",
)

CLASS_SETS = {"seed": SEED_CLASSES, "vindr": VINDR_CXR_CLASSES}

DEFAULT_CLASSES = SEED_CLASSES


def resolve_classes(spec: str | list[str] | tuple[str, ...] | None) -> tuple[str, ...]:
    """``None``/'seed' -> the seed's five, 'vindr' -> VinDr-CXR's 14, 'A,B,C' or a list -> as given."""
    if spec is None:
        return DEFAULT_CLASSES
    if isinstance(spec, str):
        if spec in CLASS_SETS:
            return CLASS_SETS[spec]
        spec = [c.strip() for c in spec.split(",") if c.strip()]
    out = tuple(spec)
    if not out or len(set(out)) != len(out):
        raise InputError(f"class list must be non-empty and unique, got {list(out)}")
    return out
