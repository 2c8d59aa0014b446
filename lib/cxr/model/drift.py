"""Drift statistics (pure, torch-free): what an image looked like to the detector, and how far a
population of such figures has moved from the model's reference.

- :func:`intensity_stats`: the mean and standard deviation of the [0, 1] pixels the detector saw
  (ingest stores them as ``image.intensity_mean`` / ``intensity_std``; the reference is computed
  with the same function);
- :class:`FeatureReference`: quintile bin edges of a feature on the reference images and the share
  of them in each bin; :func:`psi` is the population stability index of new values against it,
  ``sum((a - e) * ln(a / e))`` over the bins (``e`` reference share, ``a`` new share, both floored
  at :data:`EPSILON`). Rule of thumb: below 0.1 stable, 0.1-0.25 moving, above 0.25 shifted;
- :class:`DriftReference`: the features cxr monitors (the detector's box scores at or above
  :data:`SCORE_FLOOR`, and the two intensity figures), stored in the model's ``metadata.json``
  when the model is registered (``drift_reference``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Protocol

import numpy as np
from pydantic import BaseModel, Field
from tqdm.auto import tqdm

from cxr.model.phantoms import generate_phantom

EPSILON = 1e-4
#: Quintiles, not the textbook deciles: with a 200-image reference, 100 in-distribution phantoms gave a
#: PSI of up to 0.29 over 10 bins (sampling noise alone, above the 0.25 alert) but at most 0.07 over 5.
BINS = 5
#: Only boxes scoring at least this are compared: the dashboard and ingest store boxes above the
#: transaction's threshold (0.5 by default), so lower scores are not in the live data.
SCORE_FLOOR = 0.5
FEATURES = ("score", "intensity_mean", "intensity_std")


def intensity_stats(array: np.ndarray) -> tuple[float, float]:
    """(mean, standard deviation) of a [0, 1] image, as float64 figures."""
    a = np.asarray(array, dtype=np.float32)
    return float(a.mean(dtype=np.float64)), float(a.std(dtype=np.float64))


class FeatureReference(BaseModel):
    """Bin edges (interior cut points, ascending) and the reference share in each of the ``len(edges)+1`` bins."""

    edges: list[float]
    shares: list[float]
    n: int

    @classmethod
    def from_values(cls, values: Sequence[float], bins: int = BINS) -> FeatureReference:
        v = np.asarray([x for x in values if x is not None and np.isfinite(x)], dtype=np.float64)
        if v.size == 0:
            raise ValueError("no reference values")
        edges = np.unique(np.quantile(v, np.linspace(0, 1, bins + 1)[1:-1]))
        counts = np.bincount(np.searchsorted(edges, v, side="right"), minlength=edges.size + 1)
        return cls(edges=[float(e) for e in edges], shares=[float(c) for c in counts / v.size], n=int(v.size))

    def shares_of(self, values: Iterable[float]) -> tuple[np.ndarray, int]:
        v = np.asarray([x for x in values if x is not None and np.isfinite(x)], dtype=np.float64)
        if v.size == 0:
            return np.zeros(len(self.shares)), 0
        counts = np.bincount(np.searchsorted(np.asarray(self.edges), v, side="right"), minlength=len(self.shares))
        return counts / v.size, int(v.size)


def psi(reference: FeatureReference, values: Iterable[float]) -> tuple[float, int]:
    """(population stability index, number of values) of ``values`` against ``reference``; NaN for no values."""
    actual, n = reference.shares_of(values)
    if n == 0:
        return float("nan"), 0
    e = np.maximum(np.asarray(reference.shares), EPSILON)
    a = np.maximum(actual, EPSILON)
    return float(np.sum((a - e) * np.log(a / e))), n


class DriftReference(BaseModel):
    """The reference a model is monitored against (``metadata.json``'s ``drift_reference``)."""

    source: str
    score_floor: float = SCORE_FLOOR
    features: dict[str, FeatureReference] = Field(default_factory=dict)


def reference_from(scores: Iterable[float], stats: Iterable[tuple[float, float]], source: str) -> DriftReference:
    """A reference from the reference images' box scores (all of them; those under the floor are
    dropped here) and their :func:`intensity_stats`."""
    stats = list(stats)
    kept = [float(s) for s in scores if s >= SCORE_FLOOR]
    features = {"intensity_mean": FeatureReference.from_values([m for m, _ in stats]),
                "intensity_std": FeatureReference.from_values([s for _, s in stats])}
    if kept:
        features["score"] = FeatureReference.from_values(kept)
    return DriftReference(source=source, features=features)


class _Detects(Protocol):
    def predict(self, image: np.ndarray, **kwargs: object) -> object: ...


def reference_for(predictor: _Detects, arrays: Iterable[np.ndarray], source: str, *,
                  progress: bool | None = None, total: int | None = None) -> DriftReference:
    """The reference of ``predictor`` on ``arrays`` ([0, 1] images): its box scores (NMS 0.5, scores
    from :data:`SCORE_FLOOR`) and the images' intensity statistics."""
    scores: list[float] = []
    stats: list[tuple[float, float]] = []
    for a in tqdm(arrays, total=total, desc="drift reference", disable=(not progress) if progress is not None else None):
        det = predictor.predict(a, score_thr=SCORE_FLOOR, nms_thr=0.5)
        scores += [float(s) for s in det.scores]  # type: ignore[attr-defined]
        stats.append(intensity_stats(a))
    return reference_from(scores, stats, source)


def phantom_arrays(n: int, size: int, classes: Sequence[str], seed_base: int) -> Iterable[np.ndarray]:
    """``n`` held-out phantoms' pixels as the 8-bit PNGs ingest would read them (deterministic)."""
    for i in range(n):
        p = generate_phantom(seed_base + i, size, classes)
        yield (p.image >> 8).astype(np.float32) / 255.0


def write_reference(model_dir: Path, reference: DriftReference) -> Path:
    """Put ``reference`` into ``model_dir/metadata.json`` (``drift_reference``), every other key kept."""
    path = Path(model_dir) / "metadata.json"
    raw = json.loads(path.read_text(encoding="utf-8"))
    raw["drift_reference"] = reference.model_dump()
    path.write_text(json.dumps(raw, indent=2) + "\n", encoding="utf-8")
    return path
