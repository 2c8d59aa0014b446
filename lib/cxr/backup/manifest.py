"""The summary a backup run's manifest records, and the id checksum shared by Spark and pyarrow (pure).

A manifest (:class:`cxr.stores.backup_reader.Manifest`) records what one run wrote:
row/transaction/box/image counts, an order-independent checksum of the transaction and box ids,
the partitions and the files. Verification reads the lake copy back and recomputes the same
summary with :func:`summarize_table`; the extract side computes it with
:func:`cxr.backup.transforms.summarize` on Spark. Both use :func:`id_checksum`'s definition, so
the two sides agree bit for bit.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

#: Modulus of the id checksum (a Mersenne prime): (id mod P)^2 fits in int64, and a sum of up
#: to 2^32 terms below P fits too, on Spark (long) and numpy (int64) alike.
CHECKSUM_PRIME = 2_147_483_647


def new_run_id(now: datetime | None = None) -> str:
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


def summarize_table(table: pa.Table) -> dict[str, Any]:
    """Counts and id checksums of backup rows (a pyarrow Table), the same shape as the Spark side's."""
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
