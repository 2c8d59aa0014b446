"""The lake-loading notebook's tables and plot, from a :class:`~cxr.ingest.loading.LoadSummary` (pure)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.axes import Axes

from cxr.ingest.loading import LoadSummary


def counts_table(summary: LoadSummary) -> pd.DataFrame:
    """One row per figure of the run: listed, already seen, read, stored, refused, time, throughput."""
    rows = [("objects in the drop (matching the pattern)", summary.listed),
            ("already read by an earlier run (not read again)", summary.already_seen),
            ("read by this run", summary.read),
            ("stored", len(summary.stored)),
            ("new images (others were already in the lake)", sum(1 for s in summary.stored if s["new_image"])),
            ("refused", len(summary.refused)),
            ("boxes found", sum(summary.classes.values())),
            ("seconds", summary.seconds),
            ("images per second", summary.images_per_s)]
    return pd.DataFrame(rows, columns=["what", "value"], dtype=object)  # counts stay integers


def refused_table(summary: LoadSummary) -> pd.DataFrame:
    """What was refused and why (names without identifiers)."""
    return pd.DataFrame(summary.refused, columns=["name", "reason"])


def class_table(summary: LoadSummary) -> pd.DataFrame:
    """Boxes per class found in this run's images, most frequent first."""
    df = pd.DataFrame(sorted(summary.classes.items(), key=lambda kv: (-kv[1], kv[0])), columns=["class_name", "boxes"])
    return df


def plot_classes(summary: LoadSummary, ax: Axes | None = None) -> Axes:
    """Bars of the boxes per class; says so when the run found none."""
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 3))
    table = class_table(summary)
    if table.empty:
        ax.text(0.5, 0.5, "no boxes in this run's images", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return ax
    ax.barh(table["class_name"], table["boxes"], color="#3b82f6")
    ax.invert_yaxis()
    ax.set_xlabel("boxes")
    ax.set_title(f"Class distribution of {len(summary.stored)} image(s) loaded (demo model: not for clinical use)")
    return ax
