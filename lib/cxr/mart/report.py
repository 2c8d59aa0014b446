"""Figures for the mart notebook: the class distribution and sample images with their boxes."""

from __future__ import annotations

import random
from collections.abc import Mapping
from pathlib import Path

import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from PIL import Image

from cxr.mart.coco import SPLITS, class_counts


def plot_class_distribution(coco: Mapping, ax: Axes | None = None) -> Axes:
    """Bar chart of annotations per class, stacked by split."""
    counts = class_counts(coco)
    names = list(counts)
    if ax is None:
        _, ax = plt.subplots(figsize=(max(6, 1.1 * len(names)), 3.5))
    bottom = [0] * len(names)
    for split in SPLITS:
        values = [counts[n][split] for n in names]
        ax.bar(names, values, bottom=bottom, label=split)
        bottom = [b + v for b, v in zip(bottom, values)]
    ax.set_ylabel("annotations")
    ax.set_title(f"Class distribution ({len(coco['annotations'])} boxes, {len(coco['images'])} images)")
    ax.legend()
    ax.tick_params(axis="x", labelrotation=30)
    return ax


def plot_samples(out_dir: Path | str, coco: Mapping, n: int = 4, seed: int = 0, cols: int = 4) -> Figure | None:
    """Up to ``n`` exported images (those with boxes first) with their boxes and class names drawn."""
    by_image: dict[int, list[dict]] = {}
    for a in coco["annotations"]:
        by_image.setdefault(a["image_id"], []).append(a)
    images = sorted(coco["images"], key=lambda im: (im["id"] not in by_image, im["id"]))
    rng = random.Random(seed)
    with_boxes = [im for im in images if im["id"] in by_image]
    picks = rng.sample(with_boxes, min(n, len(with_boxes))) if with_boxes else []
    picks += images[len(with_boxes):][: n - len(picks)]
    if not picks:
        return None
    names = {c["id"]: c["name"] for c in coco["categories"]}
    cols = min(cols, len(picks))
    rows = (len(picks) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.4 * rows), squeeze=False)
    colors = plt.get_cmap("tab10")
    for ax, im in zip(axes.flat, picks):
        with Image.open(Path(out_dir) / "images" / im["file_name"]) as img:
            ax.imshow(img.convert("L"), cmap="gray")
        for a in by_image.get(im["id"], []):
            x, y, w, h = a["bbox"]
            color = colors(a["category_id"] % 10)
            ax.add_patch(Rectangle((x, y), w, h, fill=False, edgecolor=color, linewidth=1.5))
            ax.text(x, y, f"{names[a['category_id']]} {a.get('score', 1):.2f}", color="white", fontsize=7,
                    va="bottom", bbox={"facecolor": color, "alpha": 0.7, "pad": 1, "linewidth": 0})
        ax.set_title(f"{im['file_name']} ({im['split']})", fontsize=8)
        ax.axis("off")
    for ax in list(axes.flat)[len(picks):]:
        ax.axis("off")
    fig.tight_layout()
    return fig
