"""Spark for the backup: its local SparkSession (the shared builder of :mod:`cxr.stores.spark` with the
JDBC jars), and partitioned JDBC reads of the DB's tables.

On AWS Glue the Glue script (``glue/backup_job.py``) builds its own session and reader from
the Glue connection instead; everything after the read is the same code.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from sqlalchemy import Table
from sqlalchemy.engine import make_url

from cxr.backup.transforms import jdbc_custom_schema
from cxr.config import Settings
from cxr.errors import ConfigError
from cxr.stores.spark import spark_session as shared_spark_session

#: reader(table, id_column, lower, upper, num_partitions) -> DataFrame with the table's columns
#: (any types; the transforms normalize them) and rows with id_column in [lower, upper].
TableReader = Callable[[Table, str, int, int, int], DataFrame]


def jdbc_options(db_url: str) -> tuple[str, dict[str, str]]:
    """Translate a SQLAlchemy URL to a Spark JDBC url and connection properties.

    ``sqlite:///path`` -> ``jdbc:sqlite:/path`` (xerial driver). ``mysql+pymysql://`` or
    ``mariadb+pymysql://`` -> ``jdbc:mysql://host:port/db`` with the MariaDB Connector/J driver
    (Spark picks its MySQL dialect from the ``jdbc:mysql`` prefix, which quotes with backticks).
    """
    url = make_url(db_url)
    backend = url.get_backend_name()
    if backend == "sqlite":
        if not url.database or url.database == ":memory:":
            raise ConfigError("the backup needs a SQLite file, not an in-memory database", setting="CXR_DB_URL")
        return f"jdbc:sqlite:{Path(url.database).resolve()}", {"driver": "org.sqlite.JDBC"}
    if backend in ("mysql", "mariadb"):
        props = {"driver": "org.mariadb.jdbc.Driver", "user": url.username or "", "password": url.password or ""}
        ssl_ca = url.query.get("ssl_ca")
        if ssl_ca:  # TLS to RDS: verify the server certificate against the given CA
            props.update(useSsl="true", serverSslCert=str(ssl_ca))
        return f"jdbc:mysql://{url.host or '127.0.0.1'}:{url.port or 3306}/{url.database}", props
    raise ConfigError(f"the backup cannot read a {backend!r} database", setting="CXR_DB_URL")


def spark_session(settings: Settings | None = None, *, master: str | None = None,
                  app_name: str = "cxr-backup") -> SparkSession:
    """The backup's local SparkSession: the shared builder (:mod:`cxr.stores.spark`) with the JDBC jars."""
    return shared_spark_session(settings, master=master, app_name=app_name, jdbc=True)


def jdbc_reader(spark: SparkSession, db_url: str) -> TableReader:
    """Partitioned Spark JDBC reads of the schema's tables."""
    url, props = jdbc_options(db_url)
    sqlite = url.startswith("jdbc:sqlite:")

    def read(table: Table, id_column: str, lower: int, upper: int, num_partitions: int) -> DataFrame:
        quoted = f'"{table.name}"' if sqlite else f"`{table.name}`"  # `transaction` is an SQL keyword
        options = {**props, "customSchema": jdbc_custom_schema(table, sqlite=sqlite)}
        df = spark.read.jdbc(url, quoted, column=id_column, lowerBound=lower, upperBound=upper + 1,
                             numPartitions=max(1, num_partitions), properties=options)
        return df.where(F.col(id_column).between(lower, upper))  # pushed down to the DB

    return read
