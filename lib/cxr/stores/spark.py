"""The local SparkSession every Spark stage starts (the backup's JDBC extract, the backfill's file jobs).

One builder, so both stages get the same settings: ``local[N]`` from ``CXR_SPARK_MASTER`` (or the
caller), the driver on loopback for a local master, UTC session times, Spark's console quiet (the
log4j2 configuration beside this module) and, for a stage that reads the DB over JDBC, the driver
jars of ``CXR_JDBC_JARS``. On AWS Glue or EMR the platform builds the session instead
(``glue/*_job.py``); the stages take whatever session they are handed.

pyspark is the ``spark`` extra: only the Spark stages import this module.
"""

from __future__ import annotations

import os
import shutil
import sys
import warnings
from pathlib import Path

from pyspark.sql import SparkSession

from cxr.config import Settings, get_settings
from cxr.errors import ConfigError

#: log4j2 configuration that keeps Spark's own WARN/INFO lines off the console (errors still show).
LOG4J2_PROPERTIES = Path(__file__).with_name("log4j2.properties")


def check_java() -> None:
    """Spark needs a Java 17+ runtime from the system (JAVA_HOME or `java` on the PATH)."""
    if not (os.environ.get("JAVA_HOME") or shutil.which("java")):
        raise ConfigError("no Java found for Spark: install a Java 17 runtime "
                          "(Debian: apt-get install default-jre-headless) or set JAVA_HOME")


def jdbc_jar_paths(settings: Settings) -> list[str]:
    """The JDBC driver jars of ``CXR_JDBC_JARS``, each checked to exist."""
    jars = [j.strip() for j in settings.jdbc_jars.split(",") if j.strip()]
    missing = [j for j in jars if not Path(j).is_file()]
    if missing:
        raise ConfigError(f"JDBC driver jar not found: {missing[0]} (Debian: libmariadb-java, libxerial-sqlite-jdbc-java)",
                          setting="CXR_JDBC_JARS")
    return jars


def spark_session(settings: Settings | None = None, *, master: str | None = None, app_name: str = "cxr",
                  jdbc: bool = True, conf: dict[str, str] | None = None) -> SparkSession:
    """The local SparkSession (``getOrCreate``: one per process) with UTC times and a quiet console.

    ``jdbc`` adds the JDBC driver jars (the backup reads the DB through them; the backfill does not).
    ``conf`` adds stage-specific Spark settings.
    """
    s = settings or get_settings()
    jars = jdbc_jar_paths(s) if jdbc else []
    check_java()
    warnings.filterwarnings("ignore", message="PySpark does not yet fully support pandas", category=FutureWarning)
    log_conf = f"-Dlog4j2.configurationFile={LOG4J2_PROPERTIES.as_uri()}"
    master = master or s.spark_master
    builder = SparkSession.builder.master(master).appName(app_name)
    if master.startswith("local"):  # one machine: the driver listens on loopback only
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)  # Python tasks run in this interpreter's env
        builder = builder.config("spark.driver.host", "127.0.0.1").config("spark.driver.bindAddress", "127.0.0.1")
    if jars:
        builder = builder.config("spark.jars", ",".join(jars))
    for key, value in {
        "spark.driver.extraJavaOptions": log_conf,
        "spark.executor.extraJavaOptions": log_conf,
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.shuffle.partitions": "8",
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
        "spark.hadoop.mapreduce.fileoutputcommitter.marksuccessfuljobs": "false",
        "spark.hadoop.parquet.block.size": str(1024 * 1024),  # ~1 MB row groups: fine-grained pruning
        **(conf or {}),
    }.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    return spark
