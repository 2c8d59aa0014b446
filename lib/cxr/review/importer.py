"""``cxr review import``: a reading study done outside cxr, as VinDr-CXR CSV, into reviews.

Each CSV ``image_id`` is the stem of a file in the images folder. The file is matched to its
stored image by content, never by name (names may be masked): a PNG or JPEG by the sha256 of its
bytes (the stored bytes are the uploaded ones), a DICOM by the keyed hash of the original upload's
bytes kept at ingest (``image.upload_key``; the stored DICOM is de-identified, so its own hash
differs). The rows of one image and one ``rad_id`` become one review of the image's newest
transaction by ``--reviewer`` (a radiologist or admin in cxr), ``source = "import"``, the
``rad_id`` kept as ``reader_ref``: its boxes are ``add`` rows (the reader's labels), its "No
finding" row a ``no_finding`` verdict.

Everything is checked before anything is stored: an unknown image, a box outside its image or an
unknown class refuses the whole file with one line naming the first problems, and nothing is
written. Otherwise all reviews and their audit events go in one DB transaction.
"""

from __future__ import annotations

import csv
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import Connection, func, or_, select

from cxr.auth.audit import Actor
from cxr.auth.users import get_user, principal_of
from cxr.dicom.deid import keyed_hash, load_key
from cxr.errors import InputError
from cxr.model.datasets import NO_FINDING, find_image
from cxr.review.rules import Decision, check_box, class_of
from cxr.review.store import insert_review, require_reviewer
from cxr.stores.catalog import Stores
from cxr.stores.schema import image, transaction

REQUIRED = ("image_id", "class_name", "x_min", "y_min", "x_max", "y_max")
MAX_LISTED = 3


@dataclass
class ImportReport:
    reviews: int = 0
    boxes: int = 0
    no_finding: int = 0
    images: int = 0
    review_ids: list[int] = field(default_factory=list)

    def line(self) -> str:
        return (f"imported {self.reviews} review(s) of {self.images} image(s): {self.boxes} box(es), "
                f"{self.no_finding} 'No finding'")


def read_rows(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        raise InputError(f"{path}: no such CSV file")
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in REQUIRED if c not in (reader.fieldnames or [])]
        if missing:
            raise InputError(f"{path}: not a VinDr-CXR CSV, missing column(s) {', '.join(missing)}")
        return list(reader)


def _match(conn: Connection, data: bytes, key: bytes) -> dict | None:
    sha, upload = hashlib.sha256(data).hexdigest(), keyed_hash(key, "upload", data)
    r = conn.execute(select(image.c.image_id, image.c.width, image.c.height)
                     .where(or_(image.c.sha256 == sha, image.c.upload_key == upload))).first()
    if r is None:
        return None
    tid = conn.execute(select(func.max(transaction.c.transaction_id))
                       .where(transaction.c.image_id == r.image_id)).scalar()
    return None if tid is None else {"image_id": int(r.image_id), "width": int(r.width), "height": int(r.height),
                                     "transaction_id": int(tid)}


def _decisions(rows: Sequence[dict[str, str]], classes: Sequence[str], width: int, height: int,
               where: str) -> list[Decision]:
    out = []
    for i, row in enumerate(rows):
        name = (row.get("class_name") or "").strip()
        if name == NO_FINDING:
            continue
        what = f"{where} row {i + 1}"
        cid = class_of(name, classes, what)
        try:
            coords = [float(row[k]) for k in ("x_min", "y_min", "x_max", "y_max")]
        except (TypeError, ValueError):
            raise InputError(f"{what}: box coordinates are not numbers") from None
        out.append(Decision("add", None, name, cid, check_box(coords, width, height, what)))
    return out


def plan(conn: Connection, rows: Sequence[dict[str, str]], images_dir: Path, classes: Sequence[str],
         key: bytes) -> list[tuple[int, str | None, list[Decision]]]:
    """``(transaction_id, rad_id, decisions)`` per review to store; every problem raises one InputError."""
    groups: dict[tuple[str, str], list[dict[str, str]]] = {}
    for row in rows:
        groups.setdefault(((row.get("image_id") or "").strip(), (row.get("rad_id") or "").strip()), []).append(row)
    problems: list[str] = []
    out = []
    matched: dict[str, dict | None] = {}
    for (image_id, rad_id), group in groups.items():
        if image_id not in matched:
            try:
                data = find_image(images_dir, image_id).read_bytes()
            except InputError as exc:
                problems.append(f"image_id {image_id!r}: {exc}")
                matched[image_id] = None
                continue
            matched[image_id] = _match(conn, data, key)
            if matched[image_id] is None:
                problems.append(f"image_id {image_id!r}: no stored image has this file's content (unknown image)")
        m = matched[image_id]
        if m is None:
            continue
        try:
            out.append((m["transaction_id"], rad_id or None,
                        _decisions(group, classes, m["width"], m["height"], f"image_id {image_id!r}")))
        except InputError as exc:
            problems.append(str(exc))
    if problems:
        more = f" (and {len(problems) - MAX_LISTED} more)" if len(problems) > MAX_LISTED else ""
        raise InputError(f"nothing imported, {len(problems)} problem(s): {'; '.join(problems[:MAX_LISTED])}{more}")
    return out


def import_vindr(stores: Stores, csv_path: Path | str, images_dir: Path | str, reviewer_name: str,
                 classes: Sequence[str], *, actor: Actor | None = None) -> ImportReport:
    """Import the CSV's reviews (see the module docstring); all or nothing."""
    row = get_user(stores.engine, reviewer_name)
    if row is None or not row["enabled"]:
        raise InputError(f"--reviewer {reviewer_name!r}: no such enabled user (add one: cxr users add NAME --role radiologist)")
    reviewer = principal_of(row)
    require_reviewer(reviewer)
    rows = read_rows(Path(csv_path))
    key = load_key(stores.settings)
    report = ImportReport()
    actor = actor or Actor.operator()
    with stores.engine.begin() as conn:
        planned = plan(conn, rows, Path(images_dir), classes, key)
        for tid, rad_id, decisions in planned:
            verdict = "findings" if decisions else "no_finding"
            rid = insert_review(conn, tid, reviewer, verdict, decisions, source="import", reader_ref=rad_id,
                                actor=actor)
            report.review_ids.append(rid)
            report.reviews += 1
            report.boxes += len(decisions)
            report.no_finding += verdict == "no_finding"
        report.images = len({tid for tid, _, _ in planned})
    return report
