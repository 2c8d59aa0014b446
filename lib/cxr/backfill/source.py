"""Where a backfill reads from: a folder, or an ``s3://bucket/prefix`` through the lake adapter.

The driver lists the source once (:func:`list_source`) into :class:`SourceFile` rows (a location
and a size: small, picklable, shipped to the Spark tasks); each task opens the source again
(:func:`open_source`) and reads its files' bytes. A folder is searched as ``cxr ingest`` searches
one (:func:`cxr.ingest.pipeline.expand_paths`); an S3 prefix is listed with boto3 (the lake
adapter's :class:`~cxr.stores.lake.S3Lake`, pointed at the source bucket) and filtered by the same
extensions. Sizes are checked against ``CXR_MAX_UPLOAD_BYTES`` before a byte is read.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Protocol
from urllib.parse import urlsplit

from cxr.config import Settings
from cxr.errors import InputError
from cxr.ingest import names
from cxr.ingest.pipeline import IMAGE_EXTENSIONS, expand_paths, read_upload
from cxr.stores.lake import Lake, ObjectNotFound, open_lake


@dataclass(frozen=True)
class SourceFile:
    """One file to backfill: a path (folder source) or a key under the prefix (S3 source), and its size."""

    location: str
    size: int

    @property
    def display(self) -> str:
        """The location with identifiers removed and digit runs masked: what is logged and reported."""
        return names.mask_path(self.location)


class Source(Protocol):
    """A listed source, opened once per Spark task."""

    url: str

    def list(self) -> list[SourceFile]: ...
    def read(self, f: SourceFile, settings: Settings) -> tuple[str, bytes]: ...


class FolderSource:
    """A directory of exported files (searched recursively, hidden entries skipped)."""

    def __init__(self, root: Path):
        self.root = Path(root).resolve()
        self.url = self.root.as_uri()

    def list(self) -> list[SourceFile]:
        out = []
        for p in expand_paths([self.root]):
            try:
                out.append(SourceFile(str(p), p.stat().st_size))
            except OSError:  # vanished or unreadable since the listing: refused when it is read
                out.append(SourceFile(str(p), -1))
        return out

    def read(self, f: SourceFile, settings: Settings) -> tuple[str, bytes]:
        return read_upload(Path(f.location), settings)


class S3Source:
    """The objects under an ``s3://bucket/prefix`` (an exported archive), read with boto3."""

    def __init__(self, url: str, settings: Settings):
        parts = urlsplit(url)
        self.url = url
        self.lake: Lake = open_lake(f"s3://{parts.netloc}/{parts.path.strip('/')}", endpoint_url=settings.s3_endpoint_url,
                                    region=settings.s3_region, profile=settings.aws_profile)

    def list(self) -> list[SourceFile]:
        out = []
        for obj in self.lake.list(""):
            rel = PurePosixPath(obj.key)
            if any(part.startswith(".") for part in rel.parts) or rel.suffix.lower() not in IMAGE_EXTENSIONS:
                continue
            out.append(SourceFile(obj.key, obj.size))
        return out

    def read(self, f: SourceFile, settings: Settings) -> tuple[str, bytes]:
        if f.size > settings.max_upload_bytes:
            raise InputError(f"file is {f.size:,} bytes, more than the {settings.max_upload_bytes:,}-byte limit "
                             "(CXR_MAX_UPLOAD_BYTES)")
        try:
            return PurePosixPath(f.location).name, self.lake.get(f.location)
        except ObjectNotFound:
            raise InputError("no such object") from None


def open_source(source: str, settings: Settings) -> Source:
    """The source named by ``source``: ``s3://bucket/prefix`` or a folder (a path or ``file://`` URL)."""
    scheme = urlsplit(source).scheme
    if scheme == "s3":
        if not urlsplit(source).netloc:
            raise InputError(f"SOURCE {source!r} names no bucket")
        return S3Source(source, settings)
    if scheme not in ("", "file"):
        raise InputError(f"SOURCE must be a folder or an s3:// prefix, not {scheme}://")
    root = Path(urlsplit(source).path if scheme == "file" else source)
    if not root.is_dir():
        raise InputError(f"SOURCE {names.mask_path(root)} is not a folder")
    return FolderSource(root)


def list_source(source: str, settings: Settings) -> tuple[Source, list[SourceFile]]:
    """Open ``source`` and list its files (on the driver, once per run)."""
    src = open_source(source, settings)
    return src, src.list()
