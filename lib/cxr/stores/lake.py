"""The lake: a small object-store interface with a local-directory and an S3 backend.

Keys are POSIX-style paths under the prefixes of :mod:`cxr.stores.layout`. Writes are
atomic (a temp file, flushed to disk, renamed into place locally; a single PUT or a completed
multipart upload on S3), so a reader never sees half an object, and an object put is on disk
when ``put`` returns.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Protocol
from urllib.parse import unquote, urlsplit

from cxr.config import Settings, get_settings
from cxr.errors import ConfigError, CxrError

if TYPE_CHECKING:  # pyarrow is imported only by the readers that need it
    from pyarrow.fs import FileSystem

@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    last_modified: datetime
    etag: str | None = None  # S3's ETag (None for a directory lake: its mtime stands in)


class ObjectNotFound(CxrError):
    """The key names no object."""


def check_key(key: str) -> str:
    """Reject keys that could escape the lake root (``..``, absolute paths, empty parts)."""
    # split on "/" ourselves: PurePosixPath("a//b").parts drops the empty part and "."
    if not key or key.startswith("/") or any(part in ("", ".", "..") for part in key.split("/")) or "\\" in key or "\x00" in key:
        raise CxrError(f"invalid lake key {key!r}")
    return key


class Lake(Protocol):
    """What every lake backend offers."""

    bucket: str
    url: str

    def put(self, key: str, data: bytes, content_type: str | None = None) -> None: ...
    def put_file(self, key: str, path: Path, content_type: str | None = None) -> None: ...
    def get(self, key: str) -> bytes: ...
    def download(self, key: str, path: Path) -> None: ...
    def exists(self, key: str) -> bool: ...
    def info(self, key: str) -> ObjectInfo: ...
    def list(self, prefix: str = "") -> Iterator[ObjectInfo]: ...
    def delete(self, key: str) -> None: ...
    def uri(self, key: str) -> str: ...
    def arrow_filesystem(self) -> tuple[FileSystem, str]: ...


def _fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable (POSIX: the directory entry is flushed)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems cannot fsync a directory
        pass
    finally:
        os.close(fd)


class LocalLake:
    """A directory as a lake: the embedded default. ``bucket`` is the directory's name."""

    def __init__(self, root: Path):
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self.bucket = self.root.name
        self.url = self.root.as_uri()

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    def put(self, key: str, data: bytes, content_type: str | None = None) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())  # durable before a DB row names it (the listener acknowledges after)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        _fsync_dir(path.parent)

    def put_file(self, key: str, path: Path, content_type: str | None = None) -> None:
        dest = self._path(key)
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=".tmp-")
        os.close(fd)
        try:
            shutil.copyfile(path, tmp)
            os.replace(tmp, dest)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            raise ObjectNotFound(f"no object {key!r} in {self.url}") from None

    def download(self, key: str, path: Path) -> None:
        src = self._path(key)
        if not src.is_file():
            raise ObjectNotFound(f"no object {key!r} in {self.url}")
        shutil.copyfile(src, path)

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def info(self, key: str) -> ObjectInfo:
        try:
            st = self._path(key).stat()
        except FileNotFoundError:
            raise ObjectNotFound(f"no object {key!r} in {self.url}") from None
        return ObjectInfo(key, st.st_size, datetime.fromtimestamp(st.st_mtime, timezone.utc))

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        base = self.root / prefix if prefix and prefix.endswith("/") else self.root
        if not base.exists():
            return
        for dirpath, dirnames, filenames in os.walk(base):
            dirnames.sort()
            for name in sorted(filenames):
                if name.startswith(".tmp-"):
                    continue
                full = Path(dirpath) / name
                key = full.relative_to(self.root).as_posix()
                if key.startswith(prefix):
                    st = full.stat()
                    yield ObjectInfo(key, st.st_size, datetime.fromtimestamp(st.st_mtime, timezone.utc))

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def uri(self, key: str) -> str:
        return self._path(key).as_uri()

    def arrow_filesystem(self) -> tuple[FileSystem, str]:
        """A pyarrow filesystem and the lake's base path on it (for parquet readers)."""
        from pyarrow import fs

        return fs.LocalFileSystem(), str(self.root)


class S3Lake:
    """An S3 bucket (AWS or any S3-compatible endpoint) through boto3.

    Credentials come from the default AWS chain (env, profile, instance role). The bucket
    must exist and is never made public here.
    """

    def __init__(self, bucket: str, prefix: str = "", *, endpoint_url: str | None = None,
                 region: str | None = None, profile: str | None = None, check: bool = True):
        # boto3 only for an S3 lake: it costs start-up time on every command with the default directory lake.
        import boto3
        from botocore.config import Config

        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.url = f"s3://{bucket}/{self.prefix}"
        self.session = session = boto3.session.Session(profile_name=profile, region_name=region)
        self.client = session.client(
            "s3", endpoint_url=endpoint_url,
            config=Config(retries={"max_attempts": 5, "mode": "standard"}, connect_timeout=10, read_timeout=60,
                          max_pool_connections=32),
        )
        if check:
            self._check_bucket()

    def _check_bucket(self) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client.head_bucket(Bucket=self.bucket)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in ("404", "NoSuchBucket", "NotFound"):
                raise ConfigError(f"bucket {self.bucket!r} does not exist", setting="CXR_LAKE_URL") from None
            if code in ("403", "AccessDenied"):
                raise ConfigError(f"access to bucket {self.bucket!r} denied", setting="CXR_LAKE_URL") from None
            raise ConfigError(f"bucket {self.bucket!r}: {code or exc}", setting="CXR_LAKE_URL") from None
        except BotoCoreError as exc:
            raise ConfigError(f"S3 endpoint unreachable: {exc}", setting="CXR_S3_ENDPOINT_URL") from None

    def _k(self, key: str) -> str:
        return self.prefix + check_key(key)

    def put(self, key: str, data: bytes, content_type: str | None = None) -> None:
        extra = {"ContentType": content_type} if content_type else {}
        self.client.put_object(Bucket=self.bucket, Key=self._k(key), Body=data, **extra)

    def put_file(self, key: str, path: Path, content_type: str | None = None) -> None:
        # upload_file switches to multipart above 8 MB and completes atomically.
        extra = {"ContentType": content_type} if content_type else None
        self.client.upload_file(str(path), self.bucket, self._k(key), ExtraArgs=extra)

    def get(self, key: str) -> bytes:
        try:
            return self.client.get_object(Bucket=self.bucket, Key=self._k(key))["Body"].read()
        except self.client.exceptions.NoSuchKey:
            raise ObjectNotFound(f"no object {key!r} in {self.url}") from None

    def download(self, key: str, path: Path) -> None:
        from botocore.exceptions import ClientError

        try:
            self.client.download_file(self.bucket, self._k(key), str(path))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey"):
                raise ObjectNotFound(f"no object {key!r} in {self.url}") from None
            raise

    def exists(self, key: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client.head_object(Bucket=self.bucket, Key=self._k(key))
            return True
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise

    def info(self, key: str) -> ObjectInfo:
        from botocore.exceptions import ClientError

        try:
            h = self.client.head_object(Bucket=self.bucket, Key=self._k(key))
        except ClientError:
            raise ObjectNotFound(f"no object {key!r} in {self.url}") from None
        return ObjectInfo(key, int(h["ContentLength"]), h["LastModified"], str(h.get("ETag", "")).strip('"') or None)

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix + prefix):
            for obj in page.get("Contents", []):
                yield ObjectInfo(obj["Key"][len(self.prefix):], int(obj["Size"]), obj["LastModified"],
                                 str(obj.get("ETag", "")).strip('"') or None)

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self._k(key))

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{self._k(key)}"

    def arrow_filesystem(self) -> tuple[FileSystem, str]:
        """A pyarrow S3 filesystem on the same endpoint, region and credentials as this adapter."""
        from pyarrow import fs

        frozen = creds.get_frozen_credentials() if (creds := self.session.get_credentials()) is not None else None
        meta = self.client.meta
        kwargs: dict[str, object] = {"region": meta.region_name or self.session.region_name or "us-east-1"}
        if frozen is not None:
            kwargs.update(access_key=frozen.access_key, secret_key=frozen.secret_key, session_token=frozen.token)
        if meta.endpoint_url:  # the endpoint boto3 resolved: AWS's regional one, or CXR_S3_ENDPOINT_URL
            ep = urlsplit(meta.endpoint_url)
            kwargs.update(endpoint_override=ep.netloc, scheme=ep.scheme or "https")
        return fs.S3FileSystem(**kwargs), f"{self.bucket}/{self.prefix}".rstrip("/")


def open_lake(url: str, *, endpoint_url: str | None = None, region: str | None = None,
              profile: str | None = None) -> Lake:
    """Open the lake named by ``url`` (``file:///dir`` or ``s3://bucket/prefix``)."""
    parts = urlsplit(url)
    if parts.scheme == "file":
        return LocalLake(Path(unquote(parts.path)))
    if parts.scheme == "s3":
        return S3Lake(parts.netloc, parts.path, endpoint_url=endpoint_url, region=region, profile=profile)
    raise ConfigError(f"unknown scheme {parts.scheme!r}", setting="CXR_LAKE_URL")


def lake_from_settings(settings: Settings | None = None) -> Lake:
    s = settings or get_settings()
    return open_lake(s.resolved_lake_url, endpoint_url=s.s3_endpoint_url, region=s.s3_region, profile=s.aws_profile)
