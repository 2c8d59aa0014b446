"""The backup parquet in the lake: the run manifest, and reading the rows back with pyarrow (no Spark).

Stage 3 (:mod:`cxr.backup`) writes the runs; the backup's verification, the warehouse rebuild,
``cxr lake gc`` and the pipeline report read them through this module.

Only committed runs count: a manifest under ``backup/manifests/`` whose run prefix holds
``_SUCCESS``. Each run is read from the files its manifest lists (no listing of the run's
directories), with hive partitioning, so a lookup by ``image_id`` opens only the footers and the
row groups whose statistics can hold that id (or, in the seed's layout, only that image's
directory).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
from sqlalchemy import BigInteger, DateTime, Float, Integer

from cxr.stores import layout
from cxr.stores.lake import Lake
from cxr.stores.queries import JOINED_COLUMNS, REVIEW_ROW_COLUMNS
from cxr.stores.schema import PEOPLE_TABLES, TABLES, audit_event


@dataclass
class Manifest:
    """What one backup run wrote. Immutable once ``_SUCCESS`` exists; the purge adds a separate record."""

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
    #: Other tables of the run (migration 0004): ``{"reviews": {...}, "audit": {...}}``, each with the
    #: file's ``key``, ``size``, ``rows`` and what verification compares (ids, the audit chain's ends).
    tables: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def prefix(self) -> str:
        return layout.backup_run_prefix(self.layout, self.run_id)

    @property
    def success_key(self) -> str:
        return self.prefix + layout.SUCCESS

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), indent=1, sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes) -> Manifest:
        raw = json.loads(data)
        if raw.get("transaction_id_range") is not None:
            raw["transaction_id_range"] = tuple(raw["transaction_id_range"])
        return cls(**raw)


def _arrow_type(t: Any) -> pa.DataType:
    return (pa.int64() if isinstance(t, BigInteger) else pa.int32() if isinstance(t, Integer)
            else pa.float64() if isinstance(t, Float) else pa.timestamp("us") if isinstance(t, DateTime) else pa.string())


def table_schema(columns: Iterable[str], tables: Iterable[Any] = PEOPLE_TABLES) -> pa.Schema:
    """The pyarrow schema of ``columns`` named as in ``tables`` (first table that has the name wins)."""
    types: dict[str, pa.DataType] = {}
    for table in tables:
        for col in table.columns:
            types.setdefault(col.name, pa.int64() if col.name.endswith("_id") else _arrow_type(col.type))
    return pa.schema([(c, types[c]) for c in columns])


#: ``reviews.parquet`` of a run: :data:`cxr.stores.queries.REVIEW_ROW_COLUMNS`.
REVIEWS_SCHEMA = table_schema(REVIEW_ROW_COLUMNS)
#: ``audit.parquet`` of a run: every column of ``audit_event`` (hashes and all).
AUDIT_SCHEMA = table_schema([c.name for c in audit_event.columns])


def arrow_schema() -> pa.Schema:
    """The canonical pyarrow schema of ``JOINED_COLUMNS`` (the same types the Spark job writes)."""
    types: dict[str, Any] = {}
    for table in TABLES:
        for col in table.columns:
            t = col.type
            types.setdefault(col.name, pa.int64() if isinstance(t, BigInteger) else pa.int32() if isinstance(t, Integer)
                             else pa.float64() if isinstance(t, Float) else pa.timestamp("us") if isinstance(t, DateTime)
                             else pa.string())
    return pa.schema([(c, types[c]) for c in JOINED_COLUMNS])


def list_manifests(lake: Lake) -> tuple[list[Manifest], set[str], set[str]]:
    """All manifests in the lake, the run ids that are committed (``_SUCCESS``) and those purged."""
    manifests: list[Manifest] = []
    purged: set[str] = set()
    success: set[str] = set()
    for info in lake.list(layout.MANIFESTS_PREFIX):
        parsed = layout.parse_manifest_key(info.key)
        if parsed is None:
            continue
        run_id, is_purge_record = parsed
        if is_purge_record:
            purged.add(run_id)
        else:
            manifests.append(Manifest.from_json(lake.get(info.key)))
    for m in manifests:
        if lake.exists(m.success_key):
            success.add(m.run_id)
    manifests.sort(key=lambda m: m.run_id)
    return manifests, success, purged


def committed_runs(lake: Lake) -> list[Manifest]:
    """Manifests of the runs whose write completed (``_SUCCESS`` present), oldest first."""
    manifests, success, _ = list_manifests(lake)
    return [m for m in manifests if m.run_id in success]


def read_run(lake: Lake, manifest: Manifest, image_ids: Iterable[int] | None = None,
             columns: Iterable[str] | None = None) -> pa.Table:
    """One run's rows as a pyarrow Table with canonical types, optionally only some images/columns."""
    filesystem, base = lake.arrow_filesystem()
    schema = arrow_schema()
    cols = list(columns or JOINED_COLUMNS)
    paths = [f"{base}/{f['key']}" for f in manifest.files if f["key"].endswith(".parquet")]
    if not paths:
        return schema.empty_table().select(cols)
    root = f"{base}/{manifest.prefix}".rstrip("/")
    # The canonical schema, not the first file's: runs written before a column existed read it as null.
    dataset = ds.dataset(paths, schema=schema, filesystem=filesystem, format="parquet",
                         partitioning=ds.partitioning(flavor="hive"), partition_base_dir=root)
    flt = None
    if image_ids is not None:
        flt = ds.field("image_id").isin(pa.array(sorted({int(i) for i in image_ids}), type=pa.int64()))
    # A lookup reads a row group or two per file: on a busy machine one thread beats a pool (measured).
    table = dataset.to_table(columns=cols, filter=flt, use_threads=flt is None)
    return table.cast(pa.schema([schema.field(c) for c in cols]))


def read_backup(lake: Lake, image_ids: Iterable[int] | None = None) -> pd.DataFrame:
    """Every committed backup row (or only ``image_ids``') as a pandas DataFrame with ``JOINED_COLUMNS``.

    Ids are nullable integers (``Int64``: a transaction without boxes has ``<NA>`` box columns;
    test with ``pandas.isna``), times are naive UTC ``datetime64``. Rows are unique by
    (transaction_id, pred_bbox_id) even if two runs overlapped, and sorted by image, transaction, box.
    """
    ids = None if image_ids is None else list(image_ids)
    tables = [read_run(lake, m, ids) for m in committed_runs(lake)]
    table = pa.concat_tables(tables) if tables else arrow_schema().empty_table()
    mapper = {pa.int64(): pd.Int64Dtype(), pa.int32(): pd.Int32Dtype()}.get
    frame = table.to_pandas(types_mapper=mapper)
    frame = frame.drop_duplicates(subset=["transaction_id", "pred_bbox_id"])
    return frame.sort_values(["image_id", "transaction_id", "pred_bbox_id"], na_position="first").reset_index(drop=True)


def read_table(lake: Lake, manifest: Manifest, name: str, schema: pa.Schema) -> pa.Table:
    """One of a run's other tables (``reviews``, ``audit``); empty when the run has none (older runs)."""
    entry = manifest.tables.get(name)
    if not entry:
        return schema.empty_table()
    filesystem, base = lake.arrow_filesystem()
    table = ds.dataset(f"{base}/{entry['key']}", schema=schema, filesystem=filesystem, format="parquet").to_table()
    return table.cast(schema)


def read_reviews(lake: Lake) -> pd.DataFrame:
    """Every committed run's review rows (:data:`REVIEW_ROW_COLUMNS`), unique by (review_id, review_box_id)."""
    tables = [read_table(lake, m, "reviews", REVIEWS_SCHEMA) for m in committed_runs(lake)]
    table = pa.concat_tables(tables) if tables else REVIEWS_SCHEMA.empty_table()
    frame = table.to_pandas(types_mapper={pa.int64(): pd.Int64Dtype(), pa.int32(): pd.Int32Dtype()}.get)
    frame = frame.drop_duplicates(subset=["review_id", "review_box_id"])
    return frame.sort_values(["review_id", "review_box_id"], na_position="first").reset_index(drop=True)


def read_audit(lake: Lake) -> pd.DataFrame:
    """Every committed run's audit events, by event_id (each event once)."""
    tables = [read_table(lake, m, "audit", AUDIT_SCHEMA) for m in committed_runs(lake)]
    table = pa.concat_tables(tables) if tables else AUDIT_SCHEMA.empty_table()
    frame = table.to_pandas(types_mapper={pa.int64(): pd.Int64Dtype()}.get)
    return frame.drop_duplicates(subset=["event_id"]).sort_values("event_id").reset_index(drop=True)
