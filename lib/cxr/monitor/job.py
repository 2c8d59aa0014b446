"""The model monitor: performance against reviewed labels and drift against the model's reference.

:func:`gather` reads the warehouse (every image document) and the model registry once and returns
a :class:`MonitorReport`; the pipeline report shows it, and the daily DAG's ``model_monitoring``
task (``notebooks/model_monitoring.ipynb``) fails through :func:`raise_on_alert` when any drift
figure is above ``CXR_DRIFT_THRESHOLD`` (default 0.25), so that Airflow alerts.

Drift, per model version, over the last ``CXR_MONITOR_WINDOW_DAYS`` days of predictions: the
population stability index (:func:`cxr.model.drift.psi`) of the stored box scores (those at or
above the reference's floor, from transactions whose threshold let them through) and of the
images' intensity mean and standard deviation, against the ``drift_reference`` in the model's
``metadata.json``. A figure from fewer than ``CXR_MONITOR_MIN_SAMPLES`` values is shown but
raises no alert.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.axes import Axes

from cxr.config import Settings, get_settings
from cxr.errors import CxrError, IntegrityError
from cxr.model.drift import SCORE_FLOOR, DriftReference, psi
from cxr.model.registry import read_metadata, resolve_model_dir
from cxr.monitor.metrics import performance_table, reviewed_transactions
from cxr.stores.catalog import Stores
from cxr.stores.warehouse import IMAGES_COLLECTION

DRIFT_COLUMNS = ("model_version", "feature", "n", "psi", "threshold", "alert")


@dataclass
class MonitorReport:
    performance: pd.DataFrame
    drift: pd.DataFrame
    threshold: float
    window: tuple[datetime, datetime]
    notes: list[str] = field(default_factory=list)

    @property
    def alerts(self) -> pd.DataFrame:
        return self.drift[self.drift["alert"]] if len(self.drift) else self.drift

    def alert_lines(self) -> list[str]:
        return [f"model {r.model_version}: {r.feature} PSI {r.psi:.3f} > {self.threshold} (n={r.n})"
                for r in self.alerts.itertuples()]


def live_values(docs: Iterable[Mapping], since: datetime, until: datetime,
                score_floor: float) -> dict[str, dict[str, list[float]]]:
    """``model_version -> feature -> values`` of the predictions made in ``[since, until)`` (pure)."""
    out: dict[str, dict[str, list[float]]] = {}
    for doc in docs:
        for tx in doc.get("transactions") or ():
            t = tx.get("time")
            if t is None or not since <= t < until or tx.get("skip_reason"):
                continue
            v = out.setdefault(str(tx.get("model_version")), {"score": [], "intensity_mean": [], "intensity_std": []})
            if (tx.get("cs_thr") or 0.0) <= score_floor:
                v["score"] += [float(b["score"]) for b in tx.get("pred_bbox") or () if b["score"] >= score_floor]
            for k in ("intensity_mean", "intensity_std"):
                if doc.get(k) is not None:
                    v[k].append(float(doc[k]))
    return out


def drift_table(values: Mapping[str, Mapping[str, list[float]]], references: Mapping[str, DriftReference | None],
                threshold: float, min_samples: int) -> pd.DataFrame:
    """One row per (model version, feature): n, PSI, and whether it alerts (pure)."""
    rows = []
    for version, feats in sorted(values.items()):
        ref = references.get(version)
        if ref is None:
            continue
        for name, reference in ref.features.items():
            value, n = psi(reference, feats.get(name, []))
            rows.append({"model_version": version, "feature": name, "n": n, "psi": value, "threshold": threshold,
                         "alert": bool(n >= min_samples and value > threshold)})
    return pd.DataFrame(rows, columns=list(DRIFT_COLUMNS))


def _reference(settings: Settings, version: str) -> DriftReference | None:
    meta = read_metadata(resolve_model_dir(settings.models_dir, settings.model_name, version))
    return meta.drift_reference


def gather(settings: Settings | None = None, *, stores: Stores | None = None, now: datetime | None = None) -> MonitorReport:
    """Read the warehouse and the registry once; a store or model that cannot be read becomes a note."""
    stores = stores or Stores.open(settings or get_settings())
    s = stores.settings
    until = now or datetime.now(UTC).replace(tzinfo=None)
    since = until - timedelta(days=s.monitor_window_days)
    notes: list[str] = []
    try:
        docs = list(stores.warehouse[IMAGES_COLLECTION].find({}, {"_id": 0}))
    except Exception as exc:  # noqa: BLE001 - a driver's own error: the report still renders, saying why
        docs = []
        notes.append(f"warehouse not read: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
    values = live_values(docs, since, until, SCORE_FLOOR)
    references: dict[str, DriftReference | None] = {}
    for version in values:
        try:
            references[version] = _reference(s, version)
        except CxrError as exc:
            references[version] = None
            notes.append(f"model {version}: no reference ({exc})")
            continue
        if references[version] is None:
            notes.append(f"model {version}: metadata.json has no drift_reference (run `cxr model drift-reference`)")
    report = MonitorReport(performance_table(reviewed_transactions(docs)),
                           drift_table(values, references, s.drift_threshold, s.monitor_min_samples),
                           s.drift_threshold, (since, until), notes)
    if report.performance.empty:
        notes.append("no reviewed predictions yet: performance needs radiologists' reviews")
    if report.performance["map50"].isna().any() and not report.performance.empty:
        notes.append("mAP@0.5 is NaN where there is no reviewed box, or without pycocotools")
    return report


def alert_markdown(report: MonitorReport) -> str:
    """The alert box the report shows, or a line saying there is none."""
    lo, hi = report.window
    window = f"{lo:%Y-%m-%d %H:%M} to {hi:%Y-%m-%d %H:%M} UTC"
    if report.alerts.empty:
        return f"No drift alert (PSI threshold {report.threshold}, predictions from {window})."
    lines = "\n".join(f"> - {x}" for x in report.alert_lines())
    return f"> **DRIFT ALERT** (predictions from {window}; PSI threshold {report.threshold}):\n{lines}"


def raise_on_alert(report: MonitorReport) -> None:
    """Fail (IntegrityError, exit 4) when any drift figure is above the threshold: the DAG task fails."""
    if not report.alerts.empty:
        raise IntegrityError("model drift: " + "; ".join(report.alert_lines()))


def plot_drift(report: MonitorReport, ax: Axes | None = None) -> Axes:
    """Bars of each (model version, feature)'s PSI with the threshold line."""
    if ax is None:
        _, ax = plt.subplots(figsize=(8, 3))
    df = report.drift
    if df.empty:
        ax.text(0.5, 0.5, "no drift figure yet", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return ax
    labels = [f"{r.model_version}\n{r.feature}" for r in df.itertuples()]
    ax.bar(labels, df["psi"].fillna(0.0), color=["#c81e1e" if a else "#3b82f6" for a in df["alert"]])
    ax.axhline(report.threshold, color="black", linestyle="--", linewidth=1, label=f"threshold {report.threshold}")
    ax.set_ylabel("PSI")
    ax.set_title("Drift against the model's reference")
    ax.legend()
    return ax
