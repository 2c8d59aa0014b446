"""What a review says, as pure rules: the predicted boxes judged, the decisions, the final boxes.

A review of one transaction (``review``) has a verdict (``findings`` or ``no_finding``) and one
``review_box`` row per predicted box -- ``accept`` (the box as predicted), ``reject`` (no final
box) or ``correct`` (another class or extent: the final box) -- plus one ``add`` row per box the
reviewer drew that the model missed. "No finding" rejects every predicted box and adds none.
The *final labels* of a review are its accept, correct and add rows.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from cxr.errors import InputError

Box = tuple[float, float, float, float]
#: A box moved by less than this many pixels on every side is the predicted box (display rounding).
SAME_PX = 0.75


@dataclass(frozen=True)
class PredictedBox:
    pred_bbox_id: int
    class_id: int
    class_name: str
    score: float
    box: Box


@dataclass(frozen=True)
class Decision:
    """One ``review_box`` row: the action, the predicted box it judges (None for ``add``), the final box."""

    action: str
    pred_bbox_id: int | None
    class_name: str | None = None
    class_id: int | None = None
    box: Box | None = None

    @property
    def is_label(self) -> bool:
        return self.action in ("accept", "correct", "add")


def check_box(box: Sequence[float], width: int, height: int, what: str) -> Box:
    """``box`` as ``(x_min, y_min, x_max, y_max)`` if it has area and lies inside the image, else InputError."""
    x0, y0, x1, y1 = (float(v) for v in box)
    if not (x1 > x0 and y1 > y0):
        raise InputError(f"{what}: box [{x0:g}, {y0:g}, {x1:g}, {y1:g}] has no area")
    if x0 < 0 or y0 < 0 or x1 > width or y1 > height:
        raise InputError(f"{what}: box [{x0:g}, {y0:g}, {x1:g}, {y1:g}] lies outside the {width}x{height} image")
    return (x0, y0, x1, y1)


def class_of(name: str, classes: Sequence[str], what: str) -> int:
    if name not in classes:
        raise InputError(f"{what}: unknown class {name!r}; known: {', '.join(classes)}")
    return list(classes).index(name)


def same_box(a: Box, b: Box, tol: float = SAME_PX) -> bool:
    return all(abs(p - q) <= tol for p, q in zip(a, b))


def decide(predicted: Sequence[PredictedBox], edited: Iterable[Mapping], choices: Mapping[int, str],
           classes: Sequence[str], width: int, height: int) -> list[Decision]:
    """Decisions from the review panel (pure).

    ``edited``: the boxes on screen, in image pixels, as ``{"box", "class_name", "pred_bbox_id"}``
    (``pred_bbox_id`` absent or None: drawn by the reviewer). ``choices``: ``pred_bbox_id -> accept |
    reject`` as clicked. A predicted box taken off the screen is rejected; one whose class or extent
    changed is corrected (unless rejected); one left as it was must be accepted or rejected by a
    click, else InputError naming it.
    """
    on_screen: dict[int, Mapping] = {}
    added: list[Decision] = []
    for i, e in enumerate(edited):
        box = check_box(e["box"], width, height, f"box {i + 1}")
        name = str(e["class_name"])
        cid = class_of(name, classes, f"box {i + 1}")
        pid = e.get("pred_bbox_id")
        if pid is None:
            added.append(Decision("add", None, name, cid, box))
        else:
            on_screen[int(pid)] = {"box": box, "class_name": name, "class_id": cid}
    out: list[Decision] = []
    for p in predicted:
        choice = choices.get(p.pred_bbox_id)
        e = on_screen.get(p.pred_bbox_id)
        if choice == "reject" or e is None:
            out.append(Decision("reject", p.pred_bbox_id))
        elif e["class_name"] != p.class_name or not same_box(e["box"], p.box):
            out.append(Decision("correct", p.pred_bbox_id, e["class_name"], e["class_id"], e["box"]))
        elif choice == "accept":
            out.append(Decision("accept", p.pred_bbox_id, p.class_name, p.class_id, p.box))
        else:
            raise InputError(f"box #{p.pred_bbox_id} ({p.class_name}) is neither accepted, rejected nor corrected")
    return out + added


def no_finding(predicted: Sequence[PredictedBox]) -> list[Decision]:
    """The decisions of a "no finding" review: every predicted box rejected."""
    return [Decision("reject", p.pred_bbox_id) for p in predicted]


def final_labels(decisions: Iterable[Decision]) -> list[Decision]:
    return [d for d in decisions if d.is_label]


def verdict_of(decisions: Sequence[Decision]) -> str:
    return "findings" if any(d.is_label for d in decisions) else "no_finding"
