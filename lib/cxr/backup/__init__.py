"""Stage 3: move DB history older than the retention window to parquet in the lake, verify, purge.

- :mod:`cxr.backup.transforms`: pure PySpark DataFrame functions (join, types, partition columns,
  checksums). No store is opened there.
- :mod:`cxr.backup.manifest`: the summary a manifest records and the engine-independent id checksum.
- :mod:`cxr.backup.spark`: the local SparkSession (the shared :mod:`cxr.stores.spark` builder with the
  JDBC jars) and the partitioned JDBC reader.
- :mod:`cxr.backup.steps`: plan, extract, write, verify; :mod:`cxr.backup.tables`: the reviews and
  audit events beside each run; :mod:`cxr.backup.purge`: the guarded purge;
  :mod:`cxr.backup.glue`: the same job started on AWS Glue.
- :mod:`cxr.backup.job`: :func:`~cxr.backup.job.run_backup`, the sequence of those steps.

The lake layout (:mod:`cxr.stores.layout`) and the reader of the parquet
(:mod:`cxr.stores.backup_reader`) live with the stores: the warehouse rebuild, ``cxr lake gc`` and
the report read backups too. Per run, atomically: ``backup/<layout>/run=<run_id>/<partitions>/part-*.parquet``,
then ``backup/manifests/<run_id>.json``, then ``backup/<layout>/run=<run_id>/_SUCCESS``. A run without
``_SUCCESS`` is invisible to readers. After the purge, ``backup/manifests/<run_id>.purged.json``.
"""
