"""The backup's other tables (migration 0004): reviews and the audit trail, beside each run's parquet.

Small tables, read with SQLAlchemy Core and written with pyarrow (exact values: the audit rows'
hashes must recompute from the copy), under the run's own prefix, so a crashed run's files go with
it and readers see them only once ``_SUCCESS`` exists:

- ``backup/<layout>/run=<id>/tables/reviews.parquet``: the reviews of the run's transactions
  (:data:`cxr.stores.queries.REVIEW_ROW_COLUMNS`). The purge deletes a transaction's reviews with
  it, and keeps a transaction (for the next run) whose reviews in the DB are not all in a verified
  backup -- a review added after the write;
- ``backup/<layout>/run=<id>/tables/audit.parquet``: the audit events after the last run's, up to
  the chain's end when the run was written. Verified by recomputing the chain from the previous
  run's last hash. Audit rows are never purged (the DB's triggers refuse it anyway).
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from sqlalchemy import Engine, select

from cxr.auth.audit import GENESIS, check_chain
from cxr.backup.manifest import id_checksum
from cxr.stores.backup_reader import AUDIT_SCHEMA, REVIEWS_SCHEMA, Manifest, committed_runs, read_table
from cxr.stores.lake import Lake
from cxr.stores.queries import review_rows
from cxr.stores.schema import audit_event, audit_head

BATCH = 1000


def _put(lake: Lake, key: str, rows: list[dict[str, Any]], schema: pa.Schema) -> int:
    table = pa.Table.from_pylist(rows, schema=schema)
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="snappy")
    lake.put(key, buf.getvalue(), content_type="application/vnd.apache.parquet")
    return len(buf.getvalue())


def _review_summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    review_ids = sorted({int(r["review_id"]) for r in rows})
    box_ids = [int(r["review_box_id"]) for r in rows if r["review_box_id"] is not None]
    return {"rows": len(rows), "review_checksum": id_checksum(review_ids), "box_checksum": id_checksum(box_ids)}


def previous_audit_end(lake: Lake) -> tuple[int, str]:
    """(last event_id, its row_hash) backed up by the committed runs; (0, GENESIS) before the first."""
    ends = [(int(m.tables["audit"]["last"]), m.tables["audit"]["last_hash"]) for m in committed_runs(lake)
            if m.tables.get("audit", {}).get("rows")]
    return max(ends) if ends else (0, GENESIS)


def write_tables(engine: Engine, lake: Lake, prefix: str, tids: np.ndarray) -> dict[str, dict[str, Any]]:
    """Write the run's reviews and new audit events under ``prefix``; the manifest's ``tables`` entry."""
    rows: list[dict[str, Any]] = []
    with engine.connect() as conn:
        ids = [int(t) for t in tids]
        for i in range(0, len(ids), BATCH):
            rows += [dict(r._mapping) for r in conn.execute(review_rows(transaction_ids=ids[i:i + BATCH]))]
        last_id, last_hash = previous_audit_end(lake)
        head = conn.execute(select(audit_head.c.last_event_id).where(audit_head.c.head_id == 1)).scalar_one()
        events = [dict(r._mapping) for r in conn.execute(
            select(audit_event).where(audit_event.c.event_id > last_id, audit_event.c.event_id <= head)
            .order_by(audit_event.c.event_id))]
    out: dict[str, dict[str, Any]] = {}
    key = f"{prefix}tables/reviews.parquet"
    out["reviews"] = {"key": key, "size": _put(lake, key, rows, REVIEWS_SCHEMA), **_review_summary(rows)}
    key = f"{prefix}tables/audit.parquet"
    out["audit"] = {"key": key, "size": _put(lake, key, events, AUDIT_SCHEMA), "rows": len(events),
                    "first": last_id + 1, "prev_hash": last_hash,
                    "last": int(events[-1]["event_id"]) if events else last_id,
                    "last_hash": events[-1]["row_hash"] if events else last_hash}
    return out


def verify_tables(lake: Lake, manifest: Manifest) -> tuple[list[dict[str, Any]], dict[int, set[int]]]:
    """(verification rows, ``transaction_id -> review ids`` the copy holds) of a run's other tables."""
    checks: list[dict[str, Any]] = []
    reviews: dict[int, set[int]] = {}
    run = manifest.run_id
    entry = manifest.tables.get("reviews")
    if entry:
        table = read_table(lake, manifest, "reviews", REVIEWS_SCHEMA)
        rows = table.to_pylist()
        got = _review_summary(rows)
        for k in ("rows", "review_checksum", "box_checksum"):
            checks.append({"run_id": run, "check": f"reviews {k}", "expected": str(entry[k]), "actual": str(got[k]),
                           "ok": entry[k] == got[k]})
        for r in rows:
            reviews.setdefault(int(r["transaction_id"]), set()).add(int(r["review_id"]))
    entry = manifest.tables.get("audit")
    if entry:
        rows = read_table(lake, manifest, "audit", AUDIT_SCHEMA).to_pylist()
        chain = check_chain(rows, prev_hash=entry["prev_hash"], first_id=int(entry["first"]))
        ok = chain.ok and chain.checked == entry["rows"] and (not rows or rows[-1]["row_hash"] == entry["last_hash"])
        checks.append({"run_id": run, "check": "audit chain", "expected": f"{entry['rows']} events to {entry['last']}",
                       "actual": chain.line() if rows else "0 events", "ok": ok})
    return checks, reviews
