"""Ingest at archive scale: backfill a PACS export (a folder or an ``s3://`` prefix) on Spark.

- :mod:`cxr.backfill.source`: list the export once on the driver; read a file in a task.
- :mod:`cxr.backfill.tasks`: one Spark task's work (``mapPartitions``): its own stores and predictor,
  then ingest's per-file path (:mod:`cxr.ingest.pipeline`) for every file, refusals collected.
- :mod:`cxr.backfill.job`: :func:`~cxr.backfill.job.run_backfill`, the Spark job around them.
- :mod:`cxr.backfill.report`: the summary, the run record and the refusals parquet in the lake.

The backfill is ingest run many times over, so it sits on a floor of its own just above the stages
and imports ingest's per-file path; no other stage (the ``.importlinter`` contracts say so).
"""
