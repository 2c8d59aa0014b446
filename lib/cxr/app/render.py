"""Pure rendering helpers for the dashboard: annotated image, findings table, history table.

No widgets and no stores here: arrays and rows in, PNG bytes and HTML out. Every value a
user could have chosen (file names) is HTML-escaped.
"""

from __future__ import annotations

import html
import io

import numpy as np
from markdown_it import MarkdownIt
from PIL import Image, ImageDraw

from cxr.model.pixels import to_uint8

#: One colour per class index (cycled), readable on a greyscale radiograph.
PALETTE = ((230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180),
           (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212), (0, 128, 128), (220, 190, 255),
           (170, 110, 40), (255, 250, 200))
DISPLAY_MAX = 768  # longest side of the images sent to the browser
NOTE = "Demo model trained on synthetic phantom images only: not for clinical use."


def colour(class_id: int) -> tuple[int, int, int]:
    return PALETTE[int(class_id) % len(PALETTE)]


def display_image(array: np.ndarray, max_side: int = DISPLAY_MAX) -> tuple[Image.Image, float]:
    """A [0, 1] array as an RGB Pillow image no larger than ``max_side``; returns (image, scale)."""
    im = Image.fromarray(to_uint8(array), "L")
    scale = min(1.0, max_side / max(im.size))
    if scale < 1.0:
        im = im.resize((max(1, round(im.width * scale)), max(1, round(im.height * scale))), Image.BILINEAR)
    return im.convert("RGB"), scale


def png(im: Image.Image) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def annotate(base: Image.Image, records: list[dict], scale: float) -> bytes:
    """Draw ``records`` (original-pixel boxes) on a copy of ``base`` (already scaled by ``scale``)."""
    im = base.copy()
    draw = ImageDraw.Draw(im)
    width = max(2, round(max(im.size) / 300))
    for r in records:
        box = [r["x_min"] * scale, r["y_min"] * scale, r["x_max"] * scale, r["y_max"] * scale]
        c = colour(r["class_id"])
        draw.rectangle(box, outline=c, width=width)
        label = f"{r['class_name']} {r['score']:.2f}"
        tx, ty = box[0] + width, max(0, box[1] - 12)
        tw = draw.textlength(label)
        draw.rectangle([tx - 1, ty, tx + tw + 1, ty + 11], fill=(0, 0, 0))
        draw.text((tx, ty), label, fill=c)
    return png(im)


def findings_html(records: list[dict], score_thr: float = 0.0, nms_thr: float = 0.0) -> str:
    """The findings table: class, score, box; count and thresholds are in data attributes for scripts."""
    n = len(records)
    head = (f'<div class="cxr-findings" data-n="{n}" data-score="{score_thr:.2f}" data-nms="{nms_thr:.2f}">'
            f'<b>{n} finding{"s" if n != 1 else ""}</b> (score &gt; {score_thr:.2f}, NMS IoU {nms_thr:.2f})')
    if not records:
        return head + "<p>No finding above the thresholds.</p></div>"
    rows = "".join(
        f'<tr><td><span style="color:rgb{colour(r["class_id"])}">&#9632;</span> {html.escape(r["class_name"])}</td>'
        f'<td>{r["score"]:.3f}</td><td>{r["x_min"]:.0f}, {r["y_min"]:.0f}, {r["x_max"]:.0f}, {r["y_max"]:.0f}</td></tr>'
        for r in records
    )
    return (head + '<table class="cxr-table"><thead><tr><th>class</th><th>score</th><th>box (x_min, y_min, x_max, '
            f"y_max)</th></tr></thead><tbody>{rows}</tbody></table></div>")


def history_html(rows: list[dict], *, own_only: bool = False) -> str:
    """Recent uploads from the DB (``own_only``: the caption says they are the user's own)."""
    whose = "your uploads" if own_only else "all uploads"
    if not rows:
        return f'<div class="cxr-history" data-n="0" data-scope="{whose}"><i>No uploads stored yet ({whose}).</i></div>'
    body = "".join(
        f"<tr data-transaction='{r['transaction_id']}'><td>{r['transaction_id']}</td><td>{r['time']:%Y-%m-%d %H:%M:%S}</td>"
        f"<td>{html.escape(str(r['original_name'] or r['image_file']))}</td><td>{html.escape(r['source_format'])}</td>"
        f"<td>{r['n_boxes']}</td><td>{r.get('n_reviews', 0)}</td><td>{r['cs_thr']:.2f} / {r['nms_thr']:.2f}</td>"
        f"<td>{html.escape(r['model_version'])}</td></tr>"
        for r in rows
    )
    return (f'<div class="cxr-history" data-n="{len(rows)}" data-scope="{whose}"><p><i>Showing {whose}.</i></p>'
            '<table class="cxr-table"><thead><tr><th>transaction</th>'
            "<th>time (UTC)</th><th>file</th><th>format</th><th>findings</th><th>reviews</th><th>score / NMS thr</th>"
            f"<th>model</th></tr></thead><tbody>{body}</tbody></table></div>")


def user_html(username: str, role: str) -> str:
    """Who is signed in, with the sign-out link."""
    return (f'<div class="cxr-user" data-user="{html.escape(username)}" data-role="{html.escape(role)}">Signed in as '
            f'<b>{html.escape(username)}</b> ({html.escape(role)}) &middot; <a href="logout">Sign out</a></div>')


def error_html(message: str, *, title: str = "Not accepted", nothing_stored: bool = True) -> str:
    tail = " Nothing was stored." if nothing_stored else ""
    return ('<div class="cxr-error" style="background:#fde8e8;border:1px solid #c81e1e;color:#9b1c1c;'
            f'padding:8px 12px;border-radius:4px"><b>{html.escape(title)}:</b> {html.escape(message)}{tail}</div>')


def saved_html(transaction_id: int, image_id: int, created_image: bool, score_thr: float, nms_thr: float) -> str:
    what = "new image" if created_image else "image already in the lake"
    return (f'<div class="cxr-saved" data-transaction="{transaction_id}">Saved as transaction {transaction_id} '
            f"(image {image_id}, {what}; score thr {score_thr:.2f}, NMS thr {nms_thr:.2f}).</div>")


def card_html(markdown: str) -> str:
    """The model card (Markdown, raw HTML disabled) as HTML, under the synthetic-data note."""
    body = MarkdownIt("commonmark", {"html": False}).enable("table").render(markdown)
    return f'<div class="cxr-card"><p><b>{NOTE}</b></p>{body}</div>'
