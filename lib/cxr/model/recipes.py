"""Training recipes: everything a run needs apart from the data and the budget (no torch here)."""

from __future__ import annotations

from dataclasses import dataclass, replace

from cxr.errors import InputError
from cxr.model.metadata import Backbone


@dataclass(frozen=True)
class Recipe:
    """Hyper-parameters of one training recipe; the budget is ``minutes`` or ``steps``."""

    backbone: Backbone
    size: int  # training = model input size (multiple of 32)
    batch_size: int
    lr: float
    weight_decay: float
    warmup_steps: int
    packed_fraction: float  # share of nodule-packed phantoms
    head_convs: int
    smallest_anchor: int
    minutes: float | None = None
    steps: int | None = None

    def with_overrides(self, **overrides: object) -> Recipe:
        """This recipe with the given fields replaced (None leaves a field as it is)."""
        return replace(self, **{k: v for k, v in overrides.items() if v is not None})  # type: ignore[arg-type]


RECIPES: dict[str, Recipe] = {
    "demo": Recipe("resnet18", 192, 4, 1e-3, 1e-4, 30, 0.8, 2, 12, minutes=9.5),
    "smoke": Recipe("resnet18", 128, 2, 1e-3, 0.0, 0, 1.0, 1, 8, steps=12),
    "r50": Recipe("resnet50_v2", 384, 4, 1e-3, 1e-4, 50, 0.8, 4, 12, minutes=120.0),
}


def get_recipe(name: str) -> Recipe:
    if name not in RECIPES:
        raise InputError(f"unknown recipe {name!r}; use one of {', '.join(RECIPES)}")
    return RECIPES[name]
