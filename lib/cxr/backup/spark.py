"""Spark for the backup: the local SparkSession, and partitioned JDBC reads of the DB's tables.

On AWS Glue the Glue script (``glue/backup_job.py``) builds its own session and reader from
the Glue connection instead; everything after the read is the same code.
"""

from __future__ import annotations

import os
import shutil
import warnings
from collections.abc import Callable
from pathlib import Path

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from sqlalchemy import Table
from sqlalchemy.engine import make_url

from cxr.backup.transforms import jdbc_custom_schema
from cxr.config import Settings, get_settings
from cxr.errors import ConfigError

#: reader(table, id_column, lower, upper, num_partitions) -> DataFrame with the table's columns
#: (any types; the transforms normalize them) and rows with id_column in [lower, upper].
TableReader = Callable[[Table, str, int, int, int], DataFrame]

#: log4j2 configuration that keeps Spark's own WARN/INFO lines off the console (errors still show).
LOG4J2_PROPERTIES = Path(__file__).with_name("log4j2.properties")


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


def _check_java() -> None:
    """Spark needs a Java 17+ runtime from the system (JAVA_HOME or `java` on the PATH)."""
    if not (os.environ.get("JAVA_HOME") or shutil.which("java")):
        raise ConfigError("no Java found for Spark: install a Java 17 runtime "
                          "(Debian: apt-get install default-jre-headless) or set JAVA_HOME")


def spark_session(settings: Settings | None = None, *, master: str | None = None,
                  app_name: str = "cxr-backup") -> SparkSession:
    """The local SparkSession (``getOrCreate``: one per process) with the JDBC jars and UTC times."""
    s = settings or get_settings()
    jars = [j.strip() for j in s.jdbc_jars.split(",") if j.strip()]
    missing = [j for j in jars if not Path(j).is_file()]
    if missing:
        raise ConfigError(f"JDBC driver jar not found: {missing[0]} (Debian: libmariadb-java, libxerial-sqlite-jdbc-java)",
                          setting="CXR_JDBC_JARS")
    _check_java()
    warnings.filterwarnings("ignore", message="PySpark does not yet fully support pandas", category=FutureWarning)
    log_conf = f"-Dlog4j2.configurationFile={LOG4J2_PROPERTIES.as_uri()}"
    master = master or s.spark_master
    builder = SparkSession.builder.master(master).appName(app_name)
    if master.startswith("local"):  # one machine: the driver listens on loopback only
        builder = builder.config("spark.driver.host", "127.0.0.1").config("spark.driver.bindAddress", "127.0.0.1")
    spark = (
        builder
        .config("spark.jars", ",".join(jars))
        .config("spark.driver.extraJavaOptions", log_conf)
        .config("spark.executor.extraJavaOptions", log_conf)
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.shuffle.partitions", "8")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .config("spark.sql.parquet.outputTimestampType", "TIMESTAMP_MICROS")
        .config("spark.hadoop.mapreduce.fileoutputcommitter.marksuccessfuljobs", "false")
        .config("spark.hadoop.parquet.block.size", str(1024 * 1024))  # ~1 MB row groups: fine-grained pruning
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    return spark


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
