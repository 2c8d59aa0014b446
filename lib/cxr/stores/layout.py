"""The lake's key layout: every key and prefix cxr writes or reads is spelled here, and only here.

========================================================== ==============================================
key                                                        what
========================================================== ==============================================
``images/<sha256[:2]>/<sha256>.<ext>``                     the stored upload (de-identified DICOM, or the
                                                           PNG/JPEG as uploaded), by the sha256 of its bytes
``renditions/<sha256[:2]>/<sha256>.png``                   8-bit PNG rendition (display, the mart)
``sr/<sha256[:2]>/<sha256>/<transaction_id>.dcm``          de-identified DICOM SR of one transaction, beside
                                                           the image with that sha256 (``transaction.sr_key``)
``loading/<source_id>/seen/<part>.json``                   lake loading: the keys of a drop already read
                                                           (keyed hashes, size, etag/mtime), one part per run
``backup/<layout>/run=<run_id>/<partitions>/*.parquet``    stage 3 parquet, one prefix per backup run
``backup/<layout>/run=<run_id>/_SUCCESS``                  written last: the run is committed
``backup/manifests/<run_id>.json`` (``.purged.json``)      what a run wrote (and, later, what it purged)
``backfill/<run_id>/run.json``                              a backfill's run record: counts, rate, settings
``backfill/<run_id>/refusals.parquet``                      the files a backfill refused, with the reasons
``exports/``                                               mart exports written to the lake
``runs/<dag_id>/<logical date>/<task>.ipynb`` (``.html``)  executed notebooks: the run records
========================================================== ==============================================

Standard library only (plus :mod:`cxr.errors`): the Airflow DAGs import it from an environment
that has none of cxr's dependencies.
"""

from __future__ import annotations

import re
from datetime import date, datetime, timezone
from typing import Literal

from cxr.errors import InputError

IMAGES_PREFIX = "images/"
RENDITIONS_PREFIX = "renditions/"
SR_PREFIX = "sr/"
LOADING_PREFIX = "loading/"
BACKUP_PREFIX = "backup/"
MANIFESTS_PREFIX = "backup/manifests/"
BACKFILL_PREFIX = "backfill/"
EXPORTS_PREFIX = "exports/"
RUNS_PREFIX = "runs/"
SUCCESS = "_SUCCESS"

#: The prefixes swept by ``cxr lake gc`` (objects named by the sha256 of the image a DB row refers to).
CONTENT_PREFIXES = (IMAGES_PREFIX, RENDITIONS_PREFIX, SR_PREFIX)

#: Partition columns of each backup layout. ``month`` (default) and ``week`` scale; ``image_id``
#: is the seed's layout (one directory per image), kept as an option for comparison.
BackupLayout = Literal["month", "week", "image_id"]
BACKUP_LAYOUTS: dict[BackupLayout, tuple[str, ...]] = {"month": ("year", "month"), "week": ("year", "week"),
                                              "image_id": ("image_id",)}

_CONTENT_KEY = re.compile(r"^(images|renditions)/([0-9a-f]{2})/([0-9a-f]{64})\.([a-z0-9]+)$")
_SR_KEY = re.compile(r"^sr/([0-9a-f]{2})/([0-9a-f]{64})/([0-9]+)\.dcm$")
_SOURCE_ID = re.compile(r"^[0-9a-f]{16,64}$")


# -- content-addressed objects --------------------------------------------------------------------
def image_key(sha256: str, extension: str) -> str:
    """``images/<sha[:2]>/<sha>.<ext>``: the stored upload."""
    return f"{IMAGES_PREFIX}{sha256[:2]}/{sha256}.{extension}"


def rendition_key(sha256: str) -> str:
    """``renditions/<sha[:2]>/<sha>.png``: the PNG rendition of the upload with that sha256."""
    return f"{RENDITIONS_PREFIX}{sha256[:2]}/{sha256}.png"


def content_sha256(key: str) -> str | None:
    """The image sha256 a content key names (an image, its rendition or one of its SRs), or None for any other key."""
    m = _CONTENT_KEY.match(key)
    if m:
        return m.group(3) if m.group(2) == m.group(3)[:2] else None
    return sr_image_sha256(key)


def sr_key(sha256: str, transaction_id: int) -> str:
    """``sr/<sha[:2]>/<sha>/<transaction_id>.dcm``: the de-identified SR of a transaction on the image ``sha256``."""
    return f"{SR_PREFIX}{sha256[:2]}/{sha256}/{int(transaction_id)}.dcm"


def sr_image_sha256(key: str) -> str | None:
    """The sha256 of the image an SR key sits beside, or None for any other key."""
    m = _SR_KEY.match(key)
    return m.group(2) if m and m.group(1) == m.group(2)[:2] else None


def split_key(key: str) -> tuple[str, str]:
    """``(folder, file)`` of a key: the ``image`` row's ``folder`` and ``image_file`` columns."""
    folder, _, name = key.rpartition("/")
    return folder, name


# -- lake loading ---------------------------------------------------------------------------------
def loading_prefix(source_id: str) -> str:
    """``loading/<source_id>/seen/``: the manifest parts of one drop (``source_id``: a hex digest)."""
    if not _SOURCE_ID.match(source_id or ""):
        raise InputError(f"invalid loading source id {source_id!r}")
    return f"{LOADING_PREFIX}{source_id}/seen/"


def loading_part_key(source_id: str, part: str) -> str:
    """``loading/<source_id>/seen/<part>.json``: one run's (or a compaction's) manifest part."""
    return f"{loading_prefix(source_id)}{check_name(part, 'manifest part')}.json"


# -- backup runs ----------------------------------------------------------------------------------
def check_layout(layout: str) -> str:
    if layout not in BACKUP_LAYOUTS:
        raise InputError(f"--layout: unknown layout {layout!r}; use one of {', '.join(BACKUP_LAYOUTS)}")
    return layout


def backup_run_prefix(layout: str, run_id: str) -> str:
    return f"{BACKUP_PREFIX}{check_layout(layout)}/run={run_id}/"


def backup_run_prefix_of(key: str) -> str | None:
    """``backup/<layout>/run=<id>/`` of a key inside a backup run's data, else None."""
    parts = key.split("/")
    if key.startswith(MANIFESTS_PREFIX) or len(parts) < 3 or parts[0] + "/" != BACKUP_PREFIX:
        return None
    return "/".join(parts[:3]) + "/" if parts[2].startswith("run=") else None


def manifest_key(run_id: str) -> str:
    return f"{MANIFESTS_PREFIX}{run_id}.json"


def purged_key(run_id: str) -> str:
    return f"{MANIFESTS_PREFIX}{run_id}.purged.json"


def parse_manifest_key(key: str) -> tuple[str, bool] | None:
    """``(run_id, is_purge_record)`` of a key under ``backup/manifests/``, else None."""
    if not key.startswith(MANIFESTS_PREFIX):
        return None
    name = key[len(MANIFESTS_PREFIX):]
    if name.endswith(".purged.json"):
        return name.removesuffix(".purged.json"), True
    if name.endswith(".json"):
        return name.removesuffix(".json"), False
    return None


# -- backfill runs --------------------------------------------------------------------------------
def backfill_record_key(run_id: str) -> str:
    """``backfill/<run_id>/run.json``: what one backfill run did."""
    return f"{BACKFILL_PREFIX}{check_name(run_id, 'backfill run id')}/run.json"


def backfill_refusals_key(run_id: str) -> str:
    """``backfill/<run_id>/refusals.parquet``: the files the run refused, with the reasons."""
    return f"{BACKFILL_PREFIX}{check_name(run_id, 'backfill run id')}/refusals.parquet"


def parse_backfill_record_key(key: str) -> str | None:
    """The run id of a ``backfill/<run_id>/run.json`` key, else None."""
    parts = key.split("/")
    if len(parts) == 3 and parts[0] + "/" == BACKFILL_PREFIX and parts[2] == "run.json":
        return parts[1]
    return None


# -- run records ----------------------------------------------------------------------------------
#: dag ids, task ids and notebook names: what Airflow accepts, nothing that can climb a path.
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,249}$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}(T\d{6}Z)?$")


def check_name(value: str, what: str) -> str:
    """``value`` if it is a safe dag id / task id / notebook name, else :class:`InputError`."""
    if not _NAME.match(value or "") or ".." in value:
        raise InputError(f"invalid {what} {value!r}: use letters, digits, '_', '-' and '.'")
    return value


def format_logical_date(value: str | date | datetime) -> str:
    """The ``<logical date>`` part of a run key.

    A date, or a datetime at midnight UTC, gives ``YYYY-MM-DD`` (the daily and weekly DAGs);
    any other datetime gives ``YYYY-MM-DDTHHMMSSZ`` in UTC (manual runs). Strings are parsed
    as ISO 8601 first, so ``2024-01-01``, ``2024-01-01T00:00:00+00:00`` and the formatted
    value itself all work.
    """
    if isinstance(value, str):
        text = value.strip()
        if _DATE.match(text):
            return text
        try:
            value = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise InputError(f"invalid logical date {value!r}: use YYYY-MM-DD or an ISO 8601 datetime") from None
    if isinstance(value, datetime):
        utc = value.astimezone(timezone.utc) if value.tzinfo else value
        if (utc.hour, utc.minute, utc.second, utc.microsecond) == (0, 0, 0, 0):
            return utc.strftime("%Y-%m-%d")
        return utc.strftime("%Y-%m-%dT%H%M%SZ")
    if isinstance(value, date):
        return value.strftime("%Y-%m-%d")
    raise InputError(f"invalid logical date {value!r}")


def record_key(dag_id: str, logical_date: str | date | datetime, task: str, ext: str = "ipynb") -> str:
    """``runs/<dag_id>/<logical date>/<task>.<ext>``, every part checked."""
    return (
        f"{RUNS_PREFIX}{check_name(dag_id, 'dag id')}/{format_logical_date(logical_date)}/"
        f"{check_name(task, 'task id')}.{ext}"
    )


def html_key(ipynb_key: str) -> str:
    """The HTML copy's key beside a run record."""
    return ipynb_key.removesuffix(".ipynb") + ".html"


def parse_record_key(key: str) -> tuple[str, str, str] | None:
    """``(dag_id, logical_date, task)`` of a run-record key, or None for anything else."""
    parts = key.split("/")
    if len(parts) != 4 or parts[0] + "/" != RUNS_PREFIX or not parts[3].endswith(".ipynb"):
        return None
    return parts[1], parts[2], parts[3].removesuffix(".ipynb")
