"""The backup run's manifest and the id checksum shared by Spark and pyarrow (pure, no I/O).

A manifest records what one run wrote: row/transaction/box/image counts, an order-independent
checksum of the transaction and box ids, the partitions and the files. Verification reads the
lake copy back and recomputes the same summary with :func:`summarize_table`; the extract side
computes it with :func:`cxr.backup.transforms.summarize` on Spark. Both use :func:`id_checksum`'s
definition, so the two sides agree bit for bit.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np

#: Modulus of the id checksum (a Mersenne prime): (id mod P)^2 fits in int64, and a sum of up
#: to 2^32 terms below P fits too, on Spark (long) and numpy (int64) alike.
CHECKSUM_PRIME = 2_147_483_647

#: Partition columns of each layout. ``month`` (default) and ``week`` scale; ``image_id`` is the
#: seed's layout (one directory per image), kept as an option for comparison.
LAYOUTS: dict[str, tuple[str, ...]] = {"month": ("year", "month"), "week": ("year", "week"), "image_id": ("image_id",)}

BACKUP_PREFIX = "backup/"
MANIFESTS_PREFIX = "backup/manifests/"
SUCCESS = "_SUCCESS"


def run_prefix(layout: str, run_id: str) -> str:
    return f"{BACKUP_PREFIX}{layout}/run={run_id}/"


def manifest_key(run_id: str) -> str:
    return f"{MANIFESTS_PREFIX}{run_id}.json"


def purged_key(run_id: str) -> str:
    return f"{MANIFESTS_PREFIX}{run_id}.purged.json"


def new_run_id(now: datetime | None = None) -> str:
    import uuid

    now = now or datetime.now(UTC)
    return f"{now:%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"


def id_checksum(ids: Any) -> dict[str, int]:
    """Order-independent checksum of a set of ids: count, sum(id mod P), sum((id mod P)^2 mod P).

    A missing, extra or duplicated id changes it. ``ids`` is any integer array (nulls removed).
    """
    arr = np.asarray(ids, dtype=np.int64)
    m = arr % CHECKSUM_PRIME
    return {"count": int(arr.size), "sum": int(m.sum(dtype=np.int64)),
            "sumsq": int((m * m % CHECKSUM_PRIME).sum(dtype=np.int64))}


def summarize_table(table) -> dict[str, Any]:  # noqa: ANN001 - pyarrow.Table with JOINED_COLUMNS
    """Counts and id checksums of backup rows (a pyarrow Table), the same shape as the Spark side's."""
    import pyarrow.compute as pc

    tids = pc.unique(table.column("transaction_id")).to_numpy(zero_copy_only=False)
    boxes = table.column("pred_bbox_id").drop_null()
    images = pc.unique(table.column("image_id"))
    return {
        "rows": table.num_rows,
        "transactions": int(tids.size),
        "boxes": len(boxes),
        "images": len(images),
        "empty_transactions": int(table.column("pred_bbox_id").null_count),
        "transaction_checksum": id_checksum(tids),
        "box_checksum": id_checksum(boxes.to_numpy()),
    }


#: What verification compares between the extract and the lake copy.
VERIFIED_KEYS = ("rows", "transactions", "boxes", "images", "empty_transactions", "transaction_checksum", "box_checksum")


def compare(run_id: str, expected: dict[str, Any], actual: dict[str, Any]) -> list[dict[str, Any]]:
    """One verification row per check: run_id, check, expected, actual, ok."""
    return [{"run_id": run_id, "check": k, "expected": _show(expected.get(k)), "actual": _show(actual.get(k)),
             "ok": expected.get(k) == actual.get(k)} for k in VERIFIED_KEYS]


def _show(v: Any) -> str:
    if isinstance(v, dict):
        return "/".join(str(v[k]) for k in ("count", "sum", "sumsq"))
    return str(v)


@dataclass
class Manifest:
    """What one run wrote. Immutable once ``_SUCCESS`` exists; the purge adds a separate record."""

    run_id: str
    layout: str
    before: str  # ISO datetime (exclusive upper bound on transaction.time)
    created_at: str
    source: str  # DB dialect the rows came from (no URL, no credentials)
    summary: dict[str, Any]
    partitions: list[dict[str, Any]] = field(default_factory=list)  # {partition values..., "rows": n}
    files: list[dict[str, Any]] = field(default_factory=list)  # {"key": ..., "size": ...}, keys relative to the lake
    transaction_id_range: tuple[int, int] | None = None
    engine: str = "spark"

    @property
    def prefix(self) -> str:
        return run_prefix(self.layout, self.run_id)

    @property
    def success_key(self) -> str:
        return self.prefix + SUCCESS

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), indent=1, sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes) -> Manifest:
        raw = json.loads(data)
        if raw.get("transaction_id_range") is not None:
            raw["transaction_id_range"] = tuple(raw["transaction_id_range"])
        return cls(**raw)
