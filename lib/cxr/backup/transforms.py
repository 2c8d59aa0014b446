"""Pure PySpark transforms of the backup job: DataFrames in, DataFrames (or plain dicts) out.

No store is opened here: the job (``cxr.backup.job``) or the Glue script reads the three tables
and writes the result. The output rows are exactly :data:`cxr.stores.queries.JOINED_COLUMNS`
(+ the layout's partition columns), with canonical types whatever the DB (SQLite reports
``DATETIME`` as a date and ``INTEGER`` as 32-bit through JDBC, so every column is cast).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from pyspark.sql import Column as SparkColumn
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from sqlalchemy import BigInteger, Column, DateTime, Float, Integer, Table

from cxr.backup.manifest import CHECKSUM_PRIME
from cxr.stores.layout import BACKUP_LAYOUTS, BackupLayout
from cxr.stores.queries import BOX_COLUMNS, IMAGE_COLUMNS, JOINED_COLUMNS, TRANSACTION_COLUMNS

#: Order of rows inside every written file: one image's rows are contiguous, so a lookup by
#: ``image_id`` prunes through row-group statistics.
SORT_COLUMNS = ("image_id", "transaction_id", "pred_bbox_id")


def spark_type(column: Column) -> str:
    """Canonical Spark SQL type of a schema column (the parquet type of the backup)."""
    t = column.type
    if isinstance(t, BigInteger):
        return "bigint"
    if isinstance(t, Integer):  # Integer and SmallInteger
        return "int"
    if isinstance(t, Float):
        return "double"
    if isinstance(t, DateTime):
        return "timestamp_ntz"
    return "string"


def jdbc_custom_schema(table: Table, *, sqlite: bool) -> str:
    """JDBC ``customSchema`` for ``table``: 64-bit ids, doubles, and on SQLite timestamps as text
    (xerial's driver reports ``DATETIME`` as ``DATE`` and would drop the time of day)."""
    parts = []
    for col in table.columns:
        st = spark_type(col)
        if st == "timestamp_ntz":
            st = "string" if sqlite else "timestamp"
        parts.append(f"{col.name} {st.upper()}")
    return ", ".join(parts)


def normalize(df: DataFrame, table: Table) -> DataFrame:
    """Cast every column of ``table`` read from any DB to its canonical type (text timestamps parsed)."""
    return df.select(*[F.col(c.name).cast(spark_type(c)).alias(c.name) for c in table.columns])


def join_rows(images: DataFrame, transactions: DataFrame, boxes: DataFrame) -> DataFrame:
    """image ⋈ transaction ⟕ pred_bounding_box with exactly ``JOINED_COLUMNS``.

    A LEFT join on the boxes: a transaction with no boxes gives one row with NULL box columns
    (the seed's inner join dropped it).
    """
    t = transactions.select("image_id", *TRANSACTION_COLUMNS)
    i = images.select(*IMAGE_COLUMNS)
    b = boxes.select("transaction_id", *BOX_COLUMNS)
    return t.join(i, on="image_id", how="inner").join(b, on="transaction_id", how="left").select(*JOINED_COLUMNS)


def keep_transactions(transactions: DataFrame, ids: DataFrame) -> DataFrame:
    """The transactions whose id is in ``ids`` (a one-column ``transaction_id`` DataFrame: the plan)."""
    return transactions.join(F.broadcast(ids.select("transaction_id")), on="transaction_id", how="left_semi")


def id_frame(spark: SparkSession, ids: Sequence[int] | np.ndarray) -> DataFrame:
    return spark.createDataFrame(pd.DataFrame({"transaction_id": pd.array(ids, dtype="int64")}))


def with_partition_columns(df: DataFrame, layout: BackupLayout) -> DataFrame:
    """Add the layout's partition columns, derived from the transaction's (UTC) time.

    ``month``: year, month. ``week``: ISO year, ISO week (the year of the week's Thursday).
    ``image_id``: the seed's layout, nothing to add.
    """
    if layout == "month":
        return df.withColumn("year", F.year("time")).withColumn("month", F.month("time"))
    if layout == "week":
        thursday = F.date_add(F.to_date(F.date_trunc("week", F.col("time"))), 3)
        return df.withColumn("year", F.year(thursday)).withColumn("week", F.weekofyear("time"))
    if layout == "image_id":
        return df
    raise ValueError(f"unknown layout {layout!r}; use one of {', '.join(BACKUP_LAYOUTS)}")


def for_write(df: DataFrame, layout: BackupLayout) -> DataFrame:
    """Rows arranged for the writer: all rows of a partition in one task, sorted by ``image_id``.

    Each partition directory then gets one file (or a few, with ``maxRecordsPerFile``), each
    sorted by ``SORT_COLUMNS``.
    """
    parts = BACKUP_LAYOUTS[layout]
    out = with_partition_columns(df, layout)
    return out.repartition(*parts).sortWithinPartitions(*parts, *SORT_COLUMNS)


def _mod(col: str) -> SparkColumn:
    return F.pmod(F.col(col), F.lit(CHECKSUM_PRIME))


def summarize(df: DataFrame) -> dict[str, Any]:
    """Counts and id checksums of joined rows, in one Spark job (the same shape and checksum
    definition as :func:`cxr.backup.manifest.summarize_table`). Box ids are unique per row;
    transaction ids are grouped first so each counts once."""
    m = _mod("pred_bbox_id")
    per_tx = df.groupBy("transaction_id").agg(
        F.count(F.lit(1)).alias("rows"), F.count("pred_bbox_id").alias("boxes"),
        F.sum(m).alias("bsum"), F.sum(F.pmod(m * m, F.lit(CHECKSUM_PRIME))).alias("bsumsq"))
    t = _mod("transaction_id")
    row = per_tx.agg(
        F.sum("rows").alias("rows"), F.count(F.lit(1)).alias("transactions"), F.sum("boxes").alias("boxes"),
        F.sum(F.when(F.col("boxes") == 0, 1).otherwise(0)).alias("empty_transactions"),
        F.sum(t).alias("tsum"), F.sum(F.pmod(t * t, F.lit(CHECKSUM_PRIME))).alias("tsumsq"),
        F.sum("bsum").alias("bsum"), F.sum("bsumsq").alias("bsumsq"),
    ).collect()[0]
    v = {k: int(row[k] or 0) for k in row.asDict()}
    return {
        "rows": v["rows"], "transactions": v["transactions"], "boxes": v["boxes"],
        "images": df.select("image_id").distinct().count(), "empty_transactions": v["empty_transactions"],
        "transaction_checksum": {"count": v["transactions"], "sum": v["tsum"], "sumsq": v["tsumsq"]},
        "box_checksum": {"count": v["boxes"], "sum": v["bsum"], "sumsq": v["bsumsq"]},
    }


def partition_counts(df: DataFrame, layout: BackupLayout) -> list[dict[str, Any]]:
    """Rows per partition of the layout (for the manifest and the notebook's report)."""
    parts = list(BACKUP_LAYOUTS[layout])
    if layout == "image_id":  # one partition per image: report the count only, not 100k rows
        n = df.select("image_id").distinct().count()
        return [{"partitions": n, "rows": df.count()}]
    rows = with_partition_columns(df, layout).groupBy(*parts).count().orderBy(*parts).collect()
    return [{**{p: int(r[p]) for p in parts}, "rows": int(r["count"])} for r in rows]

