"""One typed configuration object for every entry point.

Values come, highest first, from keyword arguments, ``CXR_*`` environment variables,
an optional ``.env`` file in the working directory (or the file named by ``CXR_ENV_FILE``)
and the embedded defaults below. The defaults run everything on one machine with no
server: a SQLite file, a local-directory lake and an in-process MongoDB-wire warehouse,
all under ``data_dir`` (``./var``).

Secrets (passwords in URLs, AWS keys) never live in this repository: put them in the
environment, an ignored ``.env`` or an AWS profile. See ``env/*.env*`` for profiles.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from cxr.errors import ConfigError

DB_SCHEMES = ("sqlite", "mysql+pymysql", "mariadb+pymysql")
LAKE_SCHEMES = ("file", "s3")
WAREHOUSE_SCHEMES = ("embedded", "mongodb", "mongodb+srv")


class Settings(BaseSettings):
    """Configuration of cxr; each field is read from ``CXR_<FIELD>`` (upper case)."""

    model_config = SettingsConfigDict(
        env_prefix="CXR_",
        env_file=os.environ.get("CXR_ENV_FILE", ".env"),
        env_file_encoding="utf-8",
        extra="ignore",
    )

    # -- where local state lives --------------------------------------------------
    data_dir: Path = Field(Path("var"), description="Local state: SQLite file, lake directory, embedded warehouse, services.")

    # -- metadata DB (the "RDS MySQL") ----------------------------------------------
    db_url: str = Field("", description="SQLAlchemy URL; empty means sqlite:///<data_dir>/cxr.db. MySQL: mysql+pymysql://USER:PW@HOST:3306/DB?charset=utf8mb4")
    db_connect_timeout: int = Field(10, ge=1, description="Seconds to wait for the DB server.")

    # -- lake (the "S3") ------------------------------------------------------------
    lake_url: str = Field("", description="file:///abs/dir or s3://bucket[/prefix]; empty means file://<data_dir>/lake.")
    s3_endpoint_url: str | None = Field(None, description="Any S3-compatible endpoint, e.g. http://127.0.0.1:5000; empty means AWS.")
    s3_region: str | None = Field(None, description="AWS region of the bucket; empty uses the default credential chain's.")
    aws_profile: str | None = Field(None, description="AWS profile name from ~/.aws; empty uses the default credential chain.")

    # -- warehouse (the "DocumentDB") -------------------------------------------------
    warehouse_url: str = Field("embedded", description="'embedded' (in-process SecantusDB under data_dir) or a mongodb:// URI (DocumentDB: tls=true&tlsCAFile=...&retryWrites=false).")
    warehouse_db: str = Field("cxr", description="Database name in the warehouse.")
    warehouse_tls_ca_file: Path | None = Field(None, description="CA bundle for the warehouse's TLS certificate (DocumentDB: global-bundle.pem).")
    warehouse_batch_size: int = Field(1000, ge=1, le=100_000, description="Documents per bulk_write.")

    # -- model and thresholds ---------------------------------------------------------
    models_dir: Path = Field(Path("models"), description="Model registry root: <models_dir>/<name>/<version>/.")
    model_name: str = Field("cxr-demo", description="Model in the registry.")
    model_version: str = Field("latest", description="Model version, or 'latest'.")
    predictor_backend: Literal["onnx", "torch"] = Field("onnx", description="Inference backend: onnx (serving) or torch (needs the train extra and model.pt).")
    score_thr: float = Field(0.5, ge=0.0, le=1.0, description="Default confidence-score threshold (the seed's cs_thr).")
    nms_thr: float = Field(0.5, ge=0.0, le=1.0, description="Default class-wise NMS IoU threshold (the seed's nms_thr).")

    # -- ingest guards ----------------------------------------------------------------
    max_upload_bytes: int = Field(64 * 1024 * 1024, ge=1, description="Largest accepted upload.")
    max_pixels: int = Field(8192 * 8192, ge=1, description="Largest accepted width*height (decompression-bomb guard).")
    decode_threads: int = Field(0, ge=0, le=256, description="Threads one JPEG 2000 decode may use; 0 means every core (a backfill task gets its share).")
    deid_key: SecretStr | None = Field(None, description="HMAC key for DICOM UID/date pseudonyms (a secret); empty means a random key kept in <data_dir>/secrets/deid.key.")

    # -- backup ETL (stage 3) -----------------------------------------------------------
    retention_days: int = Field(90, ge=0, description="History older than this moves from the DB to the lake.")
    glue_job_name: str | None = Field(None, description="AWS Glue job that runs glue/backup_job.py.")
    spark_master: str = Field("local[*]", description="Spark master for local runs.")
    jdbc_jars: str = Field(
        "/usr/share/java/mariadb-java-client.jar,/usr/share/java/xerial-sqlite-jdbc.jar",
        description="Comma-separated JDBC driver jars for Spark.",
    )

    # -- SSH (the "EC2 bastion") ----------------------------------------------------------
    ssh_host: str | None = Field(None, description="Bastion / ETL host, e.g. ec2-...; empty means run locally.")
    ssh_port: int = Field(22, ge=1, le=65535)
    ssh_user: str | None = Field(None)
    ssh_key_file: Path | None = Field(None, description="Private key for the SSH host.")
    ssh_known_hosts: Path | None = Field(None, description="known_hosts used to verify the host key (no auto-add).")
    ssh_remote_workdir: str = Field("cxr", description="Project checkout on the remote host (relative to its home).")
    ssh_remote_python: str = Field(".venv/bin/python", description="Python with cxr and papermill on the remote host (absolute, or relative to ssh_remote_workdir).")

    # -- local servers (`cxr services up`) ------------------------------------------------
    services_ports: str = Field("", description="Override ports of `cxr services`, e.g. 'mariadb=3307,s3=5055,warehouse=27018,sshd=2222'.")

    # -- dashboard -----------------------------------------------------------------------
    dashboard_host: str = Field("127.0.0.1")
    dashboard_port: int = Field(8866, ge=1, le=65535)

    # -- validators: one clear line naming the setting ------------------------------------
    @field_validator("db_url")
    @classmethod
    def _db_scheme(cls, v: str) -> str:
        if v and urlsplit(v).scheme not in DB_SCHEMES:
            raise ValueError(f"unknown scheme {urlsplit(v).scheme!r}; use one of {', '.join(DB_SCHEMES)}")
        return v

    @field_validator("lake_url")
    @classmethod
    def _lake_scheme(cls, v: str) -> str:
        if v and urlsplit(v).scheme not in LAKE_SCHEMES:
            raise ValueError(f"unknown scheme {urlsplit(v).scheme!r}; use file:///dir or s3://bucket[/prefix]")
        if v.startswith("s3://") and not urlsplit(v).netloc:
            raise ValueError("s3:// URL names no bucket")
        return v

    @field_validator("warehouse_url")
    @classmethod
    def _warehouse_scheme(cls, v: str) -> str:
        scheme = "embedded" if v == "embedded" else urlsplit(v).scheme
        if scheme not in WAREHOUSE_SCHEMES:
            raise ValueError(f"unknown scheme {scheme!r}; use 'embedded' or mongodb://")
        return v

    # -- derived values -------------------------------------------------------------------
    @property
    def resolved_db_url(self) -> str:
        return self.db_url or f"sqlite:///{(self.data_dir / 'cxr.db').resolve()}"

    @property
    def resolved_lake_url(self) -> str:
        return self.lake_url or (self.data_dir / "lake").resolve().as_uri()

    def redacted(self) -> dict[str, object]:
        """Settings as a dict with passwords in URLs masked, safe to log or show."""
        out: dict[str, object] = {}
        for name, value in self.model_dump().items():
            if isinstance(value, str) and "://" in value:
                value = redact_url(value)
            out[name] = value
        out["db_url"] = redact_url(self.resolved_db_url)
        out["lake_url"] = self.resolved_lake_url
        return out


def redact_url(url: str) -> str:
    """``scheme://user:secret@host`` -> ``scheme://user:***@host``."""
    parts = urlsplit(url)
    if parts.password:
        return url.replace(f":{parts.password}@", ":***@", 1)
    return url


def setting_names() -> tuple[str, ...]:
    """The name of every setting (``CXR_<NAME>`` in the environment), in declaration order."""
    return tuple(Settings.model_fields)


def load_settings(**overrides: object) -> Settings:
    """Build settings, turning a validation failure into one :class:`ConfigError` line."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err.get("loc", ())) or "settings"
        msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        raise ConfigError(msg, setting=f"CXR_{loc.upper()}") from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings (cached; call ``get_settings.cache_clear()`` after changing env)."""
    return load_settings()
