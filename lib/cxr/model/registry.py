"""The model registry: ``<models_dir>/<name>/<version>/{model.onnx, metadata.json, MODEL_CARD.md}``.

``version="latest"`` picks the highest version (numeric parts compared as numbers).
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

from pydantic import ValidationError

from cxr.errors import ConfigError, InputError
from cxr.model.metadata import Artifact, ModelMetadata

METADATA = "metadata.json"
CARD = "MODEL_CARD.md"


def version_key(version: str) -> tuple:
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in re.split(r"[.\-_]", version.lstrip("v")))


def list_versions(models_dir: Path, name: str) -> list[str]:
    root = Path(models_dir) / name
    if not root.is_dir():
        return []
    return sorted((p.name for p in root.iterdir() if (p / METADATA).is_file()), key=version_key)


def list_models(models_dir: Path) -> list[tuple[str, str]]:
    """(name, version) for every model in the registry."""
    root = Path(models_dir)
    if not root.is_dir():
        return []
    return [(d.name, v) for d in sorted(root.iterdir()) if d.is_dir() for v in list_versions(root, d.name)]


def resolve_model_dir(models_dir: Path, name: str, version: str = "latest") -> Path:
    """The folder of ``name``/``version`` or a :class:`ConfigError` naming the setting."""
    versions = list_versions(models_dir, name)
    if not versions:
        raise ConfigError(f"no model {name!r} in registry {models_dir} (train one: cxr model train --recipe demo)",
                          setting="CXR_MODEL_NAME")
    if version == "latest":
        version = versions[-1]
    if version not in versions:
        raise ConfigError(f"model {name!r} has no version {version!r}; available: {', '.join(versions)}",
                          setting="CXR_MODEL_VERSION")
    return Path(models_dir) / name / version


def read_metadata(model_dir: Path) -> ModelMetadata:
    """Parse and check ``metadata.json`` (a clear :class:`InputError` when missing or malformed)."""
    path = Path(model_dir) / METADATA
    if not path.is_file():
        raise InputError(f"{path}: model metadata missing")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: not valid JSON ({exc.__class__.__name__})") from None
    try:
        return ModelMetadata.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err.get("loc", ()))
        what = "lacks" if err.get("type") == "missing" else "has a bad"
        raise InputError(f"{path}: metadata {what} {where or 'field'} ({err.get('msg', 'invalid')})") from None


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def verify_file(path: Path, expected: Artifact) -> None:
    """Check a model file against the size and sha256 its metadata records (when it records them)."""
    if not path.is_file():
        raise InputError(f"{path}: model file missing")
    size = path.stat().st_size
    if expected.bytes is not None and size != expected.bytes:
        raise InputError(f"{path}: model file has {size} bytes, metadata says {expected.bytes} (truncated or replaced)")
    if expected.sha256 is not None and sha256_file(path) != expected.sha256:
        raise InputError(f"{path}: model file checksum does not match its metadata (corrupt)")


def read_card(model_dir: Path) -> str:
    path = Path(model_dir) / CARD
    return path.read_text(encoding="utf-8") if path.is_file() else ""
