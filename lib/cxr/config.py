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

import ipaddress
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

    # -- people: logins, audit, review, monitoring ----------------------------------------
    auth_provider: Literal["password", "proxy"] = Field("password", description="Dashboard sign-in: 'password' (users in the DB, argon2) or 'proxy' (a user header set by a trusted reverse proxy / SSO).")
    session_minutes: int = Field(480, ge=1, le=7 * 24 * 60, description="A dashboard session ends this long after its sign-in.")
    login_max_failures: int = Field(5, ge=1, le=100, description="Failed sign-ins in a row that lock an account.")
    lockout_minutes: int = Field(15, ge=1, description="How long a locked account stays locked.")
    proxy_user_header: str = Field("X-Forwarded-User", description="auth_provider=proxy: the request header naming the signed-in user.")
    trusted_proxies: str = Field("", description="Comma-separated addresses or networks (CIDR) of reverse proxies whose user header and X-Forwarded-For are believed; empty trusts none.")
    cookie_secret_file: Path | None = Field(None, description="Key that signs the session cookie (a secret); empty means <data_dir>/secrets/cookie.key, made on first use.")
    drift_threshold: float = Field(0.25, gt=0.0, description="Population stability index above which the model monitor alerts.")
    monitor_window_days: int = Field(7, ge=1, le=366, description="The model monitor compares the last this-many days with the model's reference.")
    monitor_min_samples: int = Field(100, ge=1, description="Fewest images (and boxes) in the window for a drift figure to alert (a PSI of fewer values is mostly noise).")

    # -- DICOM network (`cxr dicom listen`: C-STORE/C-ECHO in, results back as DICOM SR) ----------
    dicom_ae_title: str = Field("CXR", description="AE title of the listener (and the calling AE title of result deliveries).")
    dicom_port: int = Field(11112, ge=1, le=65535, description="TCP port of the listener.")
    dicom_bind: str = Field("127.0.0.1", description="Address the listener binds to (0.0.0.0: every interface).")
    dicom_allowed_aes: str = Field("", description="Calling AE titles allowed to associate, comma-separated, each optionally AE@host; empty refuses everyone.")
    dicom_tls_cert: Path | None = Field(None, description="PEM certificate of the listener (TLS on; needs CXR_DICOM_TLS_KEY).")
    dicom_tls_key: Path | None = Field(None, description="PEM private key of CXR_DICOM_TLS_CERT.")
    dicom_tls_ca: Path | None = Field(None, description="PEM CA bundle: with TLS the listener requires peer certificates it signed; deliveries verify the destination with it.")
    dicom_results_dest: str = Field("", description="Where results go as DICOM SR: AE@host:port (the PACS); empty sends none.")
    dicom_send_attempts: int = Field(4, ge=1, le=100, description="Attempts to deliver one result before it is recorded as undelivered.")
    dicom_send_backoff_s: float = Field(2.0, ge=0.0, le=3600.0, description="Wait before the second delivery attempt; doubled for each further one.")
    dicom_timeout_s: float = Field(30.0, gt=0.0, le=3600.0, description="Network timeout of a delivery association (connect, negotiation, each response).")
    dicom_workers: int = Field(2, ge=1, le=64, description="Received instances decoded, detected and stored at once.")
    dicom_busy_wait_s: float = Field(10.0, ge=0.0, le=600.0, description="How long an instance waits for a free worker before the answer is 'out of resources' (0xA700).")
    dicom_max_associations: int = Field(8, ge=1, le=256, description="Concurrent associations; more are rejected (local limit exceeded).")
    dicom_delivery_queue: int = Field(256, ge=1, le=100_000, description="Results waiting for delivery, held in memory; a full queue records the result as undelivered.")

    # -- lake loading (notebooks/lake_loading.ipynb, hourly DAG) ----------------------------------
    loading_source: str = Field("", description="Drop the lake-loading stage ingests: a folder or s3://bucket/prefix (a PACS export, a modality's share).")
    loading_pattern: str = Field("*", description="Shell pattern of the keys to load, relative to the source (fnmatch: * also matches '/').")

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

    @field_validator("dicom_ae_title")
    @classmethod
    def _ae_title(cls, v: str) -> str:
        return check_ae_title(v)

    @field_validator("dicom_allowed_aes")
    @classmethod
    def _allowed_aes(cls, v: str) -> str:
        parse_allowed_aes(v)
        return v

    @field_validator("dicom_results_dest")
    @classmethod
    def _results_dest(cls, v: str) -> str:
        if v.strip():
            parse_destination(v)
        return v.strip()

    @field_validator("trusted_proxies")
    @classmethod
    def _proxies(cls, v: str) -> str:
        for part in filter(None, (p.strip() for p in v.split(","))):
            try:
                ipaddress.ip_network(part, strict=False)
            except ValueError:
                raise ValueError(f"not an address or network: {part!r}") from None
        return v

    @field_validator("proxy_user_header")
    @classmethod
    def _header(cls, v: str) -> str:
        if not v or not all(c.isalnum() or c == "-" for c in v):
            raise ValueError(f"not an HTTP header name: {v!r}")
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


def check_ae_title(value: str) -> str:
    """A DICOM AE title: 1-16 characters of printable ASCII, no backslash, not only spaces."""
    title = value.strip()
    if not 1 <= len(title) <= 16 or not all(32 <= ord(ch) < 127 for ch in title) or "\\" in title:
        raise ValueError(f"AE title {value!r} must be 1-16 printable ASCII characters without a backslash")
    return title


def parse_allowed_aes(spec: str) -> tuple[tuple[str, str | None], ...]:
    """``"PACS, MODALITY@10.0.0.5"`` -> ``(("PACS", None), ("MODALITY", "10.0.0.5"))`` (no host: any host)."""
    out = []
    for item in filter(None, (p.strip() for p in spec.split(","))):
        title, at, host = item.partition("@")
        if at and not host.strip():
            raise ValueError(f"entry {item!r} names no host after '@'")
        out.append((check_ae_title(title), host.strip() or None))
    return tuple(out)


def parse_destination(spec: str) -> tuple[str, str, int]:
    """``"PACS@10.0.0.9:104"`` -> ``("PACS", "10.0.0.9", 104)``."""
    title, at, rest = spec.strip().partition("@")
    host, colon, port = rest.rpartition(":")
    if not at or not colon or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(f"{spec!r} is not AE@host:port")
    return check_ae_title(title), host.strip("[]"), int(port)


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
