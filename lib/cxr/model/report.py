"""Figures for the training notebook: loss curve and example detections (matplotlib, imported lazily)."""

from __future__ import annotations


import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from cxr.model.evaluate import EVAL_SEED_BASE
from cxr.model.phantoms import generate_phantom
from cxr.model.predict import Predictor


def plot_loss(history: list[dict], ax: Axes | None = None) -> Axes:
    """Total, classification and box-regression loss per step (with a moving average)."""
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 3.5))
    steps = [h["step"] for h in history]
    for key, color in (("loss", "k"), ("classification", "tab:blue"), ("bbox_regression", "tab:orange")):
        y = np.asarray([h[key] for h in history], float)
        k = max(1, len(y) // 30)
        smooth = np.convolve(y, np.ones(k) / k, mode="valid") if len(y) >= k else y
        ax.plot(steps, y, color=color, alpha=0.2)
        ax.plot(steps[k - 1:], smooth, color=color, label=key)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title("training loss (synthetic phantoms)")
    ax.legend()
    return ax


def show_examples(predictor: Predictor, n: int = 4, *, size: int = 512, seed_base: int | None = None,
                  score_thr: float = 0.5) -> Figure:
    """Held-out phantoms with ground truth (green, dashed) and detections (red) side by side."""
    seed_base = EVAL_SEED_BASE if seed_base is None else seed_base
    fig, axes = plt.subplots(1, n, figsize=(4 * n, 4.3))
    for ax, i in zip(np.atleast_1d(axes), range(n)):
        p = generate_phantom(seed_base + i, size, predictor.classes)
        det = predictor.predict(p.as_float(), score_thr=score_thr)
        ax.imshow(p.as_float(), cmap="gray", vmin=0, vmax=1)
        for b, lab in zip(p.boxes, p.labels):
            ax.add_patch(plt.Rectangle(b[:2], b[2] - b[0], b[3] - b[1], fill=False, ec="lime", ls="--", lw=1))
        for r in det.records():
            ax.add_patch(plt.Rectangle((r["x_min"], r["y_min"]), r["x_max"] - r["x_min"], r["y_max"] - r["y_min"],
                                       fill=False, ec="red", lw=1.2))
            ax.text(r["x_min"], r["y_min"] - 3, f"{r['class_name']} {r['score']:.2f}", color="red", fontsize=7)
        ax.set_title(f"phantom {seed_base + i} (synthetic)", fontsize=9)
        ax.axis("off")
    fig.suptitle("green dashed: ground truth, red: detections - synthetic data, not for clinical use", fontsize=9)
    fig.tight_layout()
    return fig
