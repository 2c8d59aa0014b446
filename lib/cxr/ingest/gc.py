"""Sweep lake objects that no row references (left behind by a crash between put and commit).

Only ``images/``, ``renditions/`` and ``sr/`` (the SRs beside an image) are swept, and only objects
older than ``older_than``:
an ingest puts its objects (refreshing their age) before it commits its row, so an object
younger than any ingest's duration is never touched. An object counts as referenced when an
``image`` row has its sha256, or when the stage-3 backup (which may have purged the row)
still carries that sha256. Each candidate's age is re-read just before it is deleted.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from sqlalchemy import Engine, select

from cxr.errors import InputError
from cxr.stores import backup_reader, layout
from cxr.stores.lake import Lake
from cxr.stores.schema import image

log = logging.getLogger("cxr.ingest.gc")

_AGE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
CHUNK = 500


def parse_age(text: str) -> timedelta:
    """'90s', '30m', '24h', '7d', '2w' -> timedelta."""
    m = _AGE.match(text or "")
    if not m:
        raise InputError(f"--older-than {text!r}: use a number and a unit s/m/h/d/w, e.g. 24h or 7d")
    return timedelta(**{_UNITS[m.group(2)]: float(m.group(1))})


@dataclass
class GcReport:
    scanned: int = 0
    old_enough: int = 0
    referenced: int = 0
    deleted: list[str] = field(default_factory=list)
    dry_run: bool = False

    def as_dict(self) -> dict[str, object]:
        return {"scanned": self.scanned, "old_enough": self.old_enough, "referenced": self.referenced,
                "deleted": len(self.deleted), "dry_run": self.dry_run, "keys": self.deleted}


def referenced_shas(engine: Engine, shas: set[str]) -> set[str]:
    """The subset of ``shas`` that an image row references (batched IN queries)."""
    found: set[str] = set()
    items = sorted(shas)
    with engine.connect() as conn:
        for i in range(0, len(items), CHUNK):
            chunk = items[i:i + CHUNK]
            found.update(conn.execute(select(image.c.sha256).where(image.c.sha256.in_(chunk))).scalars())
    return found


def backup_shas(lake: Lake) -> set[str]:
    """sha256 values kept in the stage-3 backup (whose purge may have removed their rows)."""
    frame = backup_reader.read_backup(lake)
    return {str(s) for s in frame["sha256"].dropna().unique()}


def sweep(engine: Engine, lake: Lake, older_than: timedelta, *, dry_run: bool = False,
          now: datetime | None = None) -> GcReport:
    """Delete (or with ``dry_run`` only list) unreferenced image/rendition objects older than ``older_than``."""
    now = now or datetime.now(timezone.utc)
    cutoff = now - older_than
    report = GcReport(dry_run=dry_run)
    candidates: dict[str, list[str]] = {}
    for prefix in layout.CONTENT_PREFIXES:
        for info in lake.list(prefix):
            report.scanned += 1
            sha = layout.content_sha256(info.key)
            if sha is None or _aware(info.last_modified) >= cutoff:
                continue
            report.old_enough += 1
            candidates.setdefault(sha, []).append(info.key)
    if not candidates:
        return report
    keep = referenced_shas(engine, set(candidates)) | (backup_shas(lake) & set(candidates))
    for sha, keys in sorted(candidates.items()):
        if sha in keep:
            report.referenced += len(keys)
            continue
        for key in keys:
            if not dry_run:
                if _aware(lake.info(key).last_modified) >= cutoff:  # re-put by an ingest meanwhile
                    continue
                lake.delete(key)
                log.info("gc deleted %s", key)
            report.deleted.append(key)
    return report


def _aware(ts: datetime) -> datetime:
    return ts if ts.tzinfo else ts.replace(tzinfo=timezone.utc)
