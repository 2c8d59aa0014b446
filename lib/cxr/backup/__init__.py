"""Stage 3: move DB history older than the retention window to parquet in the lake, verify, purge.

- :mod:`cxr.backup.transforms`: pure PySpark DataFrame functions (join, types, partition columns,
  checksums). No store is opened there.
- :mod:`cxr.backup.manifest`: the run manifest and the engine-independent id checksum.
- :mod:`cxr.backup.restore`: read the parquet back with pyarrow (no Spark), for restores and the
  warehouse rebuild.
- :mod:`cxr.backup.job`: the job that wires them to the stores: extract over JDBC (or a Glue
  connection), write, verify, purge.

Lake layout (per run, atomic): ``backup/<layout>/run=<run_id>/<partitions>/part-*.parquet``, then
``backup/manifests/<run_id>.json``, then ``backup/<layout>/run=<run_id>/_SUCCESS``. A run without
``_SUCCESS`` is invisible to readers. After the purge, ``backup/manifests/<run_id>.purged.json``.
"""
