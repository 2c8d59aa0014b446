"""The Voila dashboard's widgets and their behaviour (testable without a browser).

Upload a PNG, JPEG or DICOM -> it is validated, de-identified and decoded
(:func:`cxr.ingest.decode.decode_upload`), the model runs ONCE (``Predictor.infer``), the
prediction is stored (:func:`cxr.ingest.pipeline.store_prediction`) and shown. Moving the
score/NMS sliders or the class toggles re-filters the cached raw output
(``Predictor.postprocess``) without running the model again; "Save with these thresholds"
stores another transaction for the same image. A bad file shows a banner and stores nothing.

Every action runs as the signed-in user of the page's session (:mod:`cxr.auth.sessions`; the
server binds the kernel to it): it is checked again before each store, stored as the
transaction's ``user_id`` and audited. The history shows an uploader only their own uploads.
Without a valid session the dashboard shows why and stores nothing.
"""

from __future__ import annotations

import html
import logging
import uuid

import ipywidgets as w
from IPython.display import display
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from cxr.app import render
from cxr.app.admin_panel import AdminPanel
from cxr.app.history import recent_uploads
from cxr.app.review_panel import ReviewPanel
from cxr.auth.sessions import Session, kernel_session
from cxr.config import Settings, get_settings
from cxr.errors import CxrError
from cxr.ingest.decode import DecodedUpload, decode_upload
from cxr.ingest.pipeline import StoredResult, detect, store_prediction
from cxr.model.postprocess import RawOutput
from cxr.model.predict import Predictor, load_predictor
from cxr.stores.db import check_connection
from cxr.stores.catalog import Stores
from cxr.stores.lake import Lake

log = logging.getLogger("cxr.app")

ACCEPT = ".png,.jpg,.jpeg,.dcm,.dicom,image/png,image/jpeg,application/dicom"
NOT_SIGNED_IN = "not signed in, or the session has ended: reload the page and sign in (`cxr dashboard`)"


class Dashboard:
    """All widgets of the dashboard; ``.widget`` is the root to display."""

    def __init__(self, settings: Settings, *, predictor: Predictor | None = None, engine: Engine | None = None,
                 lake: Lake | None = None, score_thr: float | None = None, nms_thr: float | None = None,
                 history_limit: int = 10, run_id: str | None = None, startup_error: str | None = None,
                 session: Session | None = None):
        self.settings = settings
        self.session = session
        self.predictor = predictor
        self.engine = engine
        self.lake = lake
        self.history_limit = history_limit
        self.run_id = run_id or f"dashboard-{uuid.uuid4().hex[:12]}"
        self.upload_state: DecodedUpload | None = None  # the current image
        self.raw: RawOutput | None = None  # the model's output for it (the model ran once)
        self.skip_reason: str | None = None  # why the model did not run on it (a lateral view)
        self.base = None  # scaled RGB display image
        self.scale = 1.0
        self.records: list[dict] = []
        self.last_saved: StoredResult | None = None
        classes = tuple(predictor.classes) if predictor is not None else ()

        self._build_controls(classes, score_thr, nms_thr)
        self._build_results(predictor)
        review_box = self._build_review(engine, lake, classes)
        self.admin = AdminPanel(engine, self.signed_in) \
            if session is not None and session.principal.may("admin") and engine is not None else None
        self.user_line = w.HTML(render.user_html(session.principal.username, session.principal.role)
                                if session is not None else "")
        self.widget = w.VBox([
            self.title, self.user_line, self.model_line,
            w.HBox([self.upload, self.save]),
            self.banner,
            w.HBox([w.VBox([self.score, self.nms]), w.VBox([w.HTML("<b>Classes shown</b>"),
                                                           w.HBox(list(self.toggles.values()),
                                                                  layout=w.Layout(flex_flow="row wrap"))])]),
            self.timing, self.saved, self.warnings,
            self.images,
            self.findings,
            w.HTML("<h3>Recent uploads</h3>"), self.history,
            review_box,
            self.admin.widget if self.admin is not None else w.VBox([]),
            self.card_box,
        ], layout=w.Layout(padding="8px"))

        self.upload.observe(self._on_upload, names="value")
        self.score.observe(self._on_filter, names="value")
        self.nms.observe(self._on_filter, names="value")
        for t in self.toggles.values():
            t.observe(self._on_filter, names="value")
        self.save.on_click(lambda _b: self.store_current())
        if startup_error:
            self.show_error(startup_error, title="Dashboard unavailable", nothing_stored=False)
            self.upload.disabled = True
        else:
            self.refresh_history()

    # -- widgets ----------------------------------------------------------------------------------
    def _build_controls(self, classes: tuple[str, ...], score_thr: float | None, nms_thr: float | None) -> None:
        """The title, the upload button, the thresholds and the class toggles."""
        layout, settings = w.Layout, self.settings
        self.title = w.HTML(
            "<style>.cxr-table{border-collapse:collapse}.cxr-table td,.cxr-table th{padding:2px 12px;"
            "text-align:left;border-bottom:1px solid #e5e5e5}</style>"
            "<h2 style='margin:0'>Chest X-ray abnormality detection</h2>"
            f"<div class='cxr-note' style='background:#fff4ce;border:1px solid #d4a72c;padding:6px 10px;"
            f"border-radius:4px;margin:6px 0'><b>{render.NOTE}</b></div>"
        )
        self.upload = w.FileUpload(accept=ACCEPT, multiple=False, description="Upload X-ray",
                                   layout=layout(width="auto"))
        self.banner = w.HTML("")
        self.score = w.FloatSlider(value=settings.score_thr if score_thr is None else score_thr, min=0.0, max=1.0,
                                   step=0.01, description="Score thr", continuous_update=False, readout_format=".2f",
                                   style={"description_width": "90px"}, layout=layout(width="420px"))
        self.nms = w.FloatSlider(value=settings.nms_thr if nms_thr is None else nms_thr, min=0.0, max=1.0, step=0.01,
                                 description="NMS IoU thr", continuous_update=False, readout_format=".2f",
                                 style={"description_width": "90px"}, layout=layout(width="420px"))
        self.toggles = {c: w.Checkbox(value=True, description=c, indent=False, layout=layout(width="auto"))
                        for c in classes}
        self.save = w.Button(description="Save with these thresholds", disabled=True, icon="save")

    def _build_results(self, predictor: Predictor | None) -> None:
        """The images, the findings, the notes, the history and the model card."""
        layout = w.Layout
        self.original = w.Image(format="png", layout=layout(max_width="100%", border="1px solid #ccc"))
        self.annotated = w.Image(format="png", layout=layout(max_width="100%", border="1px solid #ccc"))
        self.images = w.HBox([w.VBox([w.HTML("<b>Original</b>"), self.original], layout=layout(width="49%")),
                              w.VBox([w.HTML("<b>Annotated</b>"), self.annotated], layout=layout(width="49%"))],
                             layout=layout(justify_content="space-between", display="none"))
        self.findings = w.HTML("")
        self.timing = w.HTML("")
        self.saved = w.HTML("")
        self.warnings = w.HTML("")
        self.history = w.HTML("")
        self.card = w.HTML(render.card_html(getattr(predictor, "card_markdown", "") or "No model card."))
        self.model_line = w.HTML(f"Model <b>{predictor.model_name}</b> version <b>{predictor.model_version}</b>"
                                 if predictor is not None else "No model loaded")
        self.card_box = w.Accordion(children=[self.card], titles=("Model card",))
        self.card_box.selected_index = None

    def _build_review(self, engine: Engine | None, lake: Lake | None, classes: tuple[str, ...]) -> w.VBox:
        """The radiologists' review panel (empty for other roles)."""
        layout = w.Layout
        reviewer = self.session is not None and self.session.principal.may("radiologist")
        self.review_pick = w.Dropdown(options=[], description="Transaction", style={"description_width": "90px"},
                                      layout=layout(width="520px"))
        self.review_open = w.Button(description="Open for review", icon="search", layout=layout(width="auto"))
        self.review_last = w.Button(description="Review this prediction", icon="pencil", disabled=True,
                                    layout=layout(width="auto"))
        for b, cls in ((self.review_open, "cxr-review-open"), (self.review_last, "cxr-review-last")):
            b.add_class(cls)
        self.review = ReviewPanel(engine, lake, classes, self.signed_in, on_saved=lambda _rid: self.refresh_history()) \
            if reviewer and engine is not None and lake is not None else None
        self.review_open.on_click(lambda _b: self.review_pick.value is not None and self.open_review(self.review_pick.value))
        self.review_last.on_click(lambda _b: self.last_saved is not None and self.open_review(self.last_saved.transaction_id))
        if self.review is None:
            return w.VBox([])
        return w.VBox([w.HTML("<h3>Review (radiologists)</h3>"),
                       w.HBox([self.review_pick, self.review_open, self.review_last]), self.review.widget])

    # -- construction from settings -------------------------------------------------------------
    @classmethod
    def from_settings(cls, settings: Settings | None = None, *, score_thr: float | None = None,
                      nms_thr: float | None = None, history_limit: int = 10) -> Dashboard:
        """Open the model (once per kernel: ``load_predictor`` caches it), the DB and the lake."""
        knobs = {"score_thr": score_thr, "nms_thr": nms_thr, "history_limit": history_limit}
        try:
            settings = settings or get_settings()
        except CxrError as exc:
            return cls(Settings.model_construct(), startup_error=f"configuration: {exc}", **knobs)
        stores = Stores.open(settings)
        predictor = engine = lake = None
        try:
            predictor = load_predictor(settings)
            engine = stores.engine
            check_connection(engine)
            lake = stores.lake
            session = kernel_session(engine)
        except (CxrError, SQLAlchemyError) as exc:
            why = str(exc) if isinstance(exc, CxrError) else type(exc).__name__
            return cls(settings, predictor=predictor, engine=engine, lake=lake, startup_error=f"cannot start: {why}",
                       **knobs)
        if session is None:
            return cls(settings, predictor=predictor, engine=engine, lake=lake, startup_error=NOT_SIGNED_IN, **knobs)
        return cls(settings, predictor=predictor, engine=engine, lake=lake, session=session, **knobs)

    def show(self) -> Dashboard:
        display(self.widget)
        return self

    # -- behaviour --------------------------------------------------------------------------------
    def show_error(self, message: str, **kwargs: object) -> None:
        self.banner.value = render.error_html(message, **kwargs)

    def signed_in(self) -> Session | None:
        """The page's session if it is still valid (checked in the DB before every action), else None
        with the banner saying so."""
        try:
            session = kernel_session(self.engine) if self.engine is not None else None
        except SQLAlchemyError:
            session = None
        if session is None or self.session is None or session.token_hash != self.session.token_hash:
            self.show_error(NOT_SIGNED_IN, title="Signed out", nothing_stored=True)
            self.upload.disabled = True
            return None
        self.session = session
        return session

    def enabled_classes(self) -> set[str]:
        return {c for c, t in self.toggles.items() if t.value}

    def _on_upload(self, change: dict) -> None:
        files = change["new"]
        if not files:
            return
        item = files[0]
        try:
            self.handle_upload(item["name"], bytes(item["content"]))
        finally:
            self.upload.value = ()  # ready for the next file (same name too)

    def handle_upload(self, name: str, data: bytes) -> bool:
        """Validate, detect, store and show one upload; False (banner shown, nothing stored) if refused."""
        self.banner.value = ""
        self.saved.value = ""
        self.warnings.value = ""
        if self.signed_in() is None:
            return False
        try:
            upload = decode_upload(name, data, self.settings)
        except CxrError as exc:
            self._clear_result()
            self.show_error(str(exc))
            log.info("dashboard rejected an upload: %s", exc)
            return False
        detected = detect(upload, self.predictor, score_thr=self.score.value, nms_thr=self.nms.value)
        self.raw, seconds = detected.raw, detected.inference_s
        self.upload_state = upload
        self.base, self.scale = render.display_image(upload.array)
        self.original.value = render.png(self.base)
        self.images.layout.display = "flex"
        self.timing.value = (f"<div class='cxr-timing'>{upload.width}&times;{upload.height} "
                             f"{upload.source_format.upper()}; inference {seconds * 1000:.0f} ms "
                             "(threshold changes re-filter without re-running the model)</div>")
        notes = upload.warnings + ([f"not analysed: {detected.skip_reason}"] if detected.skip_reason else [])
        if notes:
            self.warnings.value = "".join(f"<div class='cxr-warning' style='color:#8a5300'>&#9888; "
                                          f"{html.escape(x)}</div>" for x in notes)
        if detected.skip_reason:  # stored, with the reason, and shown without findings
            self.skip_reason = detected.skip_reason
            self.records = []
            self.annotated.value = self.original.value
            self.findings.value = render.findings_html([], self.score.value, self.nms.value)
            self.save.disabled = True
        else:
            self.skip_reason = None
            self.refilter()
        self.store_current()
        return True

    def _clear_result(self) -> None:
        self.upload_state = self.raw = self.base = self.skip_reason = None
        self.records = []
        self.original.value = b""
        self.annotated.value = b""
        self.images.layout.display = "none"
        self.findings.value = ""
        self.timing.value = ""
        self.save.disabled = True

    def _on_filter(self, _change: dict) -> None:
        if self.raw is not None:
            self.refilter()

    def refilter(self) -> list[dict]:
        """Re-apply the thresholds and class toggles to the cached raw output (no model run)."""
        det = self.predictor.postprocess(self.raw, score_thr=self.score.value, nms_thr=self.nms.value,
                                         classes=self.enabled_classes())
        self.records = det.records()
        self.annotated.value = render.annotate(self.base, self.records, self.scale)
        self.findings.value = render.findings_html(self.records, self.score.value, self.nms.value)
        self.save.disabled = False
        return self.records

    def store_current(self) -> StoredResult | None:
        """Store the current image with the current thresholds (all classes) as a new transaction."""
        if self.upload_state is None:
            return None
        session = self.signed_in()
        if session is None:
            return None
        det = None if self.raw is None else self.predictor.postprocess(self.raw, score_thr=self.score.value,
                                                                        nms_thr=self.nms.value)
        try:
            res = store_prediction(self.engine, self.lake, self.upload_state, det, score_thr=self.score.value,
                                   nms_thr=self.nms.value, model_version=self.predictor.model_version,
                                   run_id=self.run_id, source="dashboard", actor=session.actor(),
                                   skip_reason=self.skip_reason if det is None else None)
        except (CxrError, SQLAlchemyError, OSError) as exc:
            self.show_error(f"the prediction is shown but could not be saved ({type(exc).__name__}).",
                            title="Not saved", nothing_stored=False)
            log.warning("dashboard store failed: %s", type(exc).__name__)
            return None
        self.last_saved = res
        self.review_last.disabled = self.review is None
        self.saved.value = render.saved_html(res.transaction_id, res.image_id, res.created_image,
                                             self.score.value, self.nms.value)
        self.refresh_history()
        return res

    def open_review(self, transaction_id: int) -> bool:
        """Open a stored transaction in the review panel (radiologists and admins)."""
        return self.review is not None and self.review.open(int(transaction_id))

    def refresh_history(self) -> None:
        if self.engine is None or self.session is None:
            return
        p = self.session.principal
        try:
            rows = recent_uploads(self.engine, self.history_limit, user_id=None if p.may("radiologist") else p.user_id)
            self.history.value = render.history_html(rows, own_only=not p.may("radiologist"))
            self.review_pick.options = [(f"#{r['transaction_id']} {r['time']:%Y-%m-%d %H:%M} "
                                         f"{r['original_name'] or r['image_file']} ({r['n_boxes']} box(es), "
                                         f"{r['n_reviews']} review(s))", r["transaction_id"]) for r in rows]
        except SQLAlchemyError as exc:
            self.history.value = f"<i>History unavailable ({type(exc).__name__}).</i>"
