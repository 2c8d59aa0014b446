"""The dashboard's review panel: a radiologist judges each predicted box of a stored transaction.

The image and its boxes are shown in jupyter-bbox-widget's ``BBoxWidget`` (drag a box or its
corners to correct its extent, pick another class for it, draw a box the model missed, delete
one). Under it, one row per predicted box with "Accept" and "Reject". "Save review" turns what
is on screen into decisions (:func:`cxr.review.rules.decide`: a deleted or rejected box is
rejected, a changed one corrected, an untouched one must be accepted or rejected) and stores
them (:func:`cxr.review.store.save_review`); "No finding" rejects every box. Opening a case and
saving it are audited. Coordinates on screen are those of a display copy of at most
``render.DISPLAY_MAX`` pixels; they are scaled back to image pixels, and an accepted box keeps
the predicted coordinates exactly.
"""

from __future__ import annotations

import html
import io
from collections.abc import Callable, Sequence

import ipywidgets as w
from jupyter_bbox_widget import BBoxWidget
from PIL import Image
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from cxr.app import render
from cxr.auth.sessions import Session
from cxr.errors import CxrError
from cxr.review import rules
from cxr.review.store import ReviewCase, open_case, save_review
from cxr.stores.lake import Lake
from cxr.stores.schema import REVIEW_ACTIONS


def display_copy(png: bytes) -> tuple[bytes, float]:
    """A PNG no larger than ``render.DISPLAY_MAX`` on its longer side, and its scale."""
    with Image.open(io.BytesIO(png)) as im:
        scale = min(1.0, render.DISPLAY_MAX / max(im.size))
        if scale >= 1.0:
            return png, 1.0
        small = im.convert("L").resize((max(1, round(im.width * scale)), max(1, round(im.height * scale))),
                                       Image.BILINEAR)
    return render.png(small.convert("RGB")), scale


def to_screen(boxes: Sequence[rules.PredictedBox], scale: float) -> list[dict]:
    return [{"x": b.box[0] * scale, "y": b.box[1] * scale, "width": (b.box[2] - b.box[0]) * scale,
             "height": (b.box[3] - b.box[1]) * scale, "label": b.class_name, "pred_bbox_id": b.pred_bbox_id}
            for b in boxes]


def from_screen(bboxes: Sequence[dict], scale: float) -> list[dict]:
    """Widget boxes (display pixels) -> ``{"box", "class_name", "pred_bbox_id"}`` in image pixels."""
    return [{"box": (b["x"] / scale, b["y"] / scale, (b["x"] + b["width"]) / scale, (b["y"] + b["height"]) / scale),
             "class_name": b.get("label") or "", "pred_bbox_id": b.get("pred_bbox_id")} for b in bboxes]


class ReviewPanel:
    """The review widgets; ``open(transaction_id)`` loads a case, ``submit()`` / ``no_finding()`` store it."""

    def __init__(self, engine: Engine, lake: Lake, classes: Sequence[str],
                 session: Callable[[], Session | None], on_saved: Callable[[int], None] | None = None):
        self.engine, self.lake, self.classes = engine, lake, tuple(classes)
        self.session, self.on_saved = session, on_saved
        self.case: ReviewCase | None = None
        self.scale = 1.0
        self.title = w.HTML("")
        self.boxes = BBoxWidget(classes=list(self.classes), hide_buttons=True)
        self.rows = w.VBox([])
        self.choices: dict[int, w.ToggleButtons] = {}
        self.save = w.Button(description="Save review", icon="check", button_style="success", disabled=True)
        self.none = w.Button(description="No finding", icon="ban", disabled=True)
        self.status = w.HTML("")
        self.save.add_class("cxr-review-save")
        self.none.add_class("cxr-review-none")
        self.save.on_click(lambda _b: self.submit())
        self.none.on_click(lambda _b: self.no_finding())
        self.widget = w.VBox([self.title, self.boxes, self.rows, w.HBox([self.save, self.none]), self.status],
                             layout=w.Layout(display="none", border="1px solid #ccc", padding="6px"))
        self.widget.add_class("cxr-review")

    def _fail(self, message: str) -> None:
        self.status.value = render.error_html(message, title="Review not saved", nothing_stored=True)

    def open(self, transaction_id: int) -> bool:
        """Load a stored transaction for review (audited); False with the reason shown when refused."""
        s = self.session()
        if s is None:
            return False
        try:
            case = open_case(self.engine, self.lake, int(transaction_id), s.principal, client_addr=s.client_addr)
        except (CxrError, SQLAlchemyError, OSError) as exc:
            self.widget.layout.display = "flex"
            self._fail(str(exc) if isinstance(exc, CxrError) else f"cannot open it ({type(exc).__name__})")
            return False
        self.case = case
        png, self.scale = display_copy(case.rendition_png)
        self.boxes.image_bytes = png
        self.boxes.bboxes = to_screen(case.boxes, self.scale)
        self.choices = {}
        rows = []
        for b in case.boxes:
            t = w.ToggleButtons(options=[("Accept", "accept"), ("Reject", "reject")], value=None,
                                style={"button_width": "80px"})
            self.choices[b.pred_bbox_id] = t
            row = w.HBox([w.HTML(f"<b>#{b.pred_bbox_id}</b> {html.escape(b.class_name)} {b.score:.2f}",
                                 layout=w.Layout(width="260px")), t])
            row.add_class("cxr-review-row")
            row.add_class(f"cxr-review-box-{b.pred_bbox_id}")
            rows.append(row)
        self.rows.children = rows
        earlier = f"; {case.earlier_reviews} earlier review(s)" if case.earlier_reviews else ""
        self.title.value = (f'<div class="cxr-review-case" data-transaction="{case.transaction_id}" '
                            f'data-boxes="{len(case.boxes)}"><b>Review transaction {case.transaction_id}</b> '
                            f"(image {case.image_id}, {case.width}&times;{case.height}, model "
                            f"{html.escape(case.model_version)}, {len(case.boxes)} predicted box(es){earlier}). "
                            "Drag a box or its corners to correct it, pick a class to relabel it, draw the "
                            "boxes the model missed; accept or reject the others.</div>")
        self.status.value = ""
        self.save.disabled = self.none.disabled = False
        self.widget.layout.display = "flex"
        return True

    def decisions(self) -> list[rules.Decision]:
        case = self.case
        chosen = {pid: t.value for pid, t in self.choices.items() if t.value}
        edited = from_screen(self.boxes.bboxes, self.scale)
        tol = max(rules.SAME_PX, 1.0 / self.scale)
        unchanged = {e["pred_bbox_id"]: e for e in edited if e["pred_bbox_id"] is not None}
        for p in case.boxes:  # display rounding is no correction: keep the predicted coordinates exactly
            e = unchanged.get(p.pred_bbox_id)
            if e is not None and e["class_name"] == p.class_name and rules.same_box(e["box"], p.box, tol):
                e["box"] = p.box
        return rules.decide(case.boxes, edited, chosen, self.classes, case.width, case.height)

    def _store(self, decisions: list[rules.Decision]) -> int | None:
        s = self.session()
        if s is None or self.case is None:
            return None
        try:
            rid = save_review(self.engine, self.case.transaction_id, s.principal, rules.verdict_of(decisions), decisions,
                              client_addr=s.client_addr)
        except (CxrError, SQLAlchemyError) as exc:
            self._fail(str(exc) if isinstance(exc, CxrError) else f"the DB refused it ({type(exc).__name__})")
            return None
        counts = {a: sum(1 for d in decisions if d.action == a) for a in REVIEW_ACTIONS}
        attrs = " ".join(f'data-{a}="{n}"' for a, n in counts.items())
        self.status.value = (f'<div class="cxr-review-saved" data-review="{rid}" {attrs}>Review {rid} saved: '
                             + ", ".join(f"{n} {a}" for a, n in counts.items()) + ".</div>")
        self.save.disabled = self.none.disabled = True
        if self.on_saved:
            self.on_saved(rid)
        return rid

    def submit(self) -> int | None:
        if self.case is None:
            return None
        try:
            decisions = self.decisions()
        except CxrError as exc:
            self._fail(str(exc))
            return None
        return self._store(decisions)

    def no_finding(self) -> int | None:
        if self.case is None:
            return None
        return self._store(rules.no_finding(self.case.boxes))
