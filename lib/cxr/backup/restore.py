"""Read the backup parquet back from the lake with pyarrow (no Spark, no JVM).

Only committed runs count: a manifest under ``backup/manifests/`` whose run prefix holds
``_SUCCESS``. Each run is read from the files its manifest lists (no listing of the run's
directories), with hive partitioning, so a lookup by ``image_id`` opens only the footers and the
row groups whose statistics can hold that id (or, in the seed's layout, only that image's
directory). Used by ``cxr backup restore``, the backup's verification and the warehouse rebuild.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from cxr.backup.manifest import MANIFESTS_PREFIX, Manifest
from cxr.stores.queries import JOINED_COLUMNS
from cxr.stores.schema import TABLES


def arrow_schema():  # noqa: ANN201 - pyarrow.Schema
    """The canonical pyarrow schema of ``JOINED_COLUMNS`` (the same types the Spark job writes)."""
    import pyarrow as pa
    from sqlalchemy import BigInteger, DateTime, Float, Integer

    types: dict[str, Any] = {}
    for table in TABLES:
        for col in table.columns:
            t = col.type
            types.setdefault(col.name, pa.int64() if isinstance(t, BigInteger) else pa.int32() if isinstance(t, Integer)
                             else pa.float64() if isinstance(t, Float) else pa.timestamp("us") if isinstance(t, DateTime)
                             else pa.string())
    return pa.schema([(c, types[c]) for c in JOINED_COLUMNS])


def arrow_filesystem(lake, settings=None):  # noqa: ANN001, ANN201 - Lake, Settings -> (FileSystem, base path)
    """A pyarrow filesystem and base path for the lake (local directory or S3 with the lake's endpoint)."""
    from pyarrow import fs

    from cxr.stores.lake import LocalLake

    if isinstance(lake, LocalLake):
        return fs.LocalFileSystem(), str(lake.root)
    import boto3

    from cxr.config import get_settings

    s = settings or get_settings()
    session = boto3.session.Session(profile_name=s.aws_profile, region_name=s.s3_region)
    creds = session.get_credentials()
    frozen = creds.get_frozen_credentials() if creds is not None else None
    meta = lake.client.meta  # the endpoint and region the lake adapter itself talks to
    kwargs: dict[str, Any] = {"region": meta.region_name or session.region_name or "us-east-1"}
    if frozen is not None:
        kwargs.update(access_key=frozen.access_key, secret_key=frozen.secret_key, session_token=frozen.token)
    endpoint = meta.endpoint_url or s.s3_endpoint_url
    if endpoint:
        from urllib.parse import urlsplit

        ep = urlsplit(endpoint)
        kwargs.update(endpoint_override=ep.netloc, scheme=ep.scheme or "https")
    base = f"{lake.bucket}/{lake.prefix}".rstrip("/")
    return fs.S3FileSystem(**kwargs), base


def list_manifests(lake) -> tuple[list[Manifest], set[str], set[str]]:  # noqa: ANN001
    """All manifests in the lake, the run ids that are committed (``_SUCCESS``) and those purged."""
    manifests, purged, success = [], set(), set()
    for info in lake.list(MANIFESTS_PREFIX):
        name = info.key[len(MANIFESTS_PREFIX):]
        if name.endswith(".purged.json"):
            purged.add(name[: -len(".purged.json")])
        elif name.endswith(".json"):
            manifests.append(Manifest.from_json(lake.get(info.key)))
    for m in manifests:
        if lake.exists(m.success_key):
            success.add(m.run_id)
    manifests.sort(key=lambda m: m.run_id)
    return manifests, success, purged


def committed_runs(lake) -> list[Manifest]:  # noqa: ANN001
    """Manifests of the runs whose write completed (``_SUCCESS`` present), oldest first."""
    manifests, success, _ = list_manifests(lake)
    return [m for m in manifests if m.run_id in success]


def read_run(lake, manifest: Manifest, settings=None, image_ids: Iterable[int] | None = None,  # noqa: ANN001
             columns: Iterable[str] | None = None):  # noqa: ANN201 - pyarrow.Table
    """One run's rows as a pyarrow Table with canonical types, optionally only some images/columns."""
    import pyarrow as pa
    import pyarrow.dataset as ds

    filesystem, base = arrow_filesystem(lake, settings)
    schema = arrow_schema()
    cols = list(columns or JOINED_COLUMNS)
    paths = [f"{base}/{f['key']}" for f in manifest.files if f["key"].endswith(".parquet")]
    if not paths:
        return schema.empty_table().select(cols)
    root = f"{base}/{manifest.prefix}".rstrip("/")
    dataset = ds.dataset(paths, filesystem=filesystem, format="parquet",
                         partitioning=ds.partitioning(flavor="hive"), partition_base_dir=root)
    flt = None
    if image_ids is not None:
        flt = ds.field("image_id").isin(pa.array(sorted({int(i) for i in image_ids}), type=pa.int64()))
    # A lookup reads a row group or two per file: on a busy machine one thread beats a pool (measured).
    table = dataset.to_table(columns=cols, filter=flt, use_threads=flt is None)
    return table.cast(pa.schema([schema.field(c) for c in cols]))


def read_backup(lake, settings=None, image_ids: Iterable[int] | None = None):  # noqa: ANN001, ANN201
    """Every committed backup row (or only ``image_ids``') as a pandas DataFrame with ``JOINED_COLUMNS``.

    Ids are nullable integers (``Int64``: a transaction without boxes has ``<NA>`` box columns;
    test with ``pandas.isna``), times are naive UTC ``datetime64``. Rows are unique by
    (transaction_id, pred_bbox_id) even if two runs overlapped, and sorted by image, transaction, box.
    """
    import pandas as pd
    import pyarrow as pa

    ids = None if image_ids is None else list(image_ids)
    tables = [read_run(lake, m, settings, ids) for m in committed_runs(lake)]
    table = pa.concat_tables(tables) if tables else arrow_schema().empty_table()
    mapper = {pa.int64(): pd.Int64Dtype(), pa.int32(): pd.Int32Dtype()}.get
    frame = table.to_pandas(types_mapper=mapper)
    frame = frame.drop_duplicates(subset=["transaction_id", "pred_bbox_id"])
    return frame.sort_values(["image_id", "transaction_id", "pred_bbox_id"], na_position="first").reset_index(drop=True)
