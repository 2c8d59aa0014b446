"""Lake loading (cxr.ingest.loading): only new objects of a drop are read; the manifest in the lake."""

from __future__ import annotations

import json
import os

import pytest
from ingest_factory import count_rows

from cxr.errors import InputError
from cxr.ingest import loading, loading_report
from cxr.model.phantoms import generate_phantom, png_bytes, write_dicom
from cxr.stores import layout
from cxr.stores.catalog import Stores
from cxr.stores.lake import LocalLake


class CountingDrop:
    """A drop whose reads are counted (the listing is not a read)."""

    def __init__(self, lake):
        self.lake, self.reads = lake, []

    def get(self, key):
        self.reads.append(key)
        return self.lake.get(key)

    def __getattr__(self, name):
        return getattr(self.lake, name)


def _drop_pngs(put, first: int, n: int) -> list[str]:
    keys = []
    for seed in range(first, first + n):
        key = f"export/{seed % 3}/{1000000 + seed}_DOE_JOHN_{seed}.png"  # names that carry identifiers
        put(key, png_bytes(generate_phantom(seed, size=64)))
        keys.append(key)
    return keys


def _run(stores, drop, fake_predictor, **kw):
    return loading.load_drop(stores, drop.lake.url, source_lake=drop, predictor=fake_predictor, progress=False, **kw)


@pytest.mark.parametrize("kind", [pytest.param("local", marks=pytest.mark.unit),
                                  pytest.param("s3", marks=pytest.mark.integration)])
def test_fifty_then_ten_more_gives_sixty_and_the_second_run_reads_only_the_ten(
        kind, request, sqlite_engine, local_lake, settings, fake_predictor, tmp_path):
    source = request.getfixturevalue(f"{kind}_lake") if kind == "s3" else LocalLake(tmp_path / "drop")
    if kind == "s3":  # the drop is another bucket than the lake
        local = local_lake
    else:
        local = LocalLake(tmp_path / "the-lake")
    stores = Stores.open(settings, engine=sqlite_engine, lake=local)
    drop = CountingDrop(source)
    first = _drop_pngs(source.put, 0, 50)
    s1 = _run(stores, drop, fake_predictor, run_id="hour-1")
    assert (s1.listed, s1.read, len(s1.stored), s1.already_seen) == (50, 50, 50, 0)
    assert sorted(drop.reads) == sorted(first)
    drop.reads.clear()
    more = _drop_pngs(source.put, 50, 10)
    s2 = _run(stores, drop, fake_predictor, run_id="hour-2")
    assert (s2.listed, s2.read, len(s2.stored), s2.already_seen) == (60, 10, 10, 50)
    assert sorted(drop.reads) == sorted(more)  # only the new ten were read
    assert count_rows(sqlite_engine)["image"] == 60
    drop.reads.clear()
    s3 = _run(stores, drop, fake_predictor, run_id="hour-3")
    assert (s3.read, drop.reads, count_rows(sqlite_engine)["transaction"]) == (0, [], 60)
    # the manifest holds keyed hashes, never a name
    parts = [o.key for o in local.list(layout.LOADING_PREFIX)]
    assert len(parts) == 2
    blob = b"".join(local.get(k) for k in parts)
    assert b"DOE" not in blob and b"JOHN" not in blob and b"export" not in blob
    assert len(json.loads(local.get(parts[0]))["entries"]) == 50
    assert all("100000" not in s["name"] and "#######" in s["name"] for s in s1.stored)  # digit runs masked


@pytest.mark.unit
def test_refused_objects_are_not_reread_and_a_changed_object_is(sqlite_engine, settings, fake_predictor, tmp_path):
    source = LocalLake(tmp_path / "drop")
    stores = Stores.open(settings, engine=sqlite_engine, lake=LocalLake(tmp_path / "lake"))
    drop = CountingDrop(source)
    source.put("report.pdf", b"%PDF-1.4 not an image")
    source.put("a.png", png_bytes(generate_phantom(1, size=64)))
    source.put(".hidden/b.png", png_bytes(generate_phantom(2, size=64)))
    write_dicom(generate_phantom(3, size=64), tmp_path / "drop" / "scan.dcm")
    s1 = _run(stores, drop, fake_predictor)
    assert (s1.listed, len(s1.stored), [r["name"] for r in s1.refused]) == (3, 2, ["report.pdf"])
    assert "unsupported file type" in s1.refused[0]["reason"]
    drop.reads.clear()
    assert _run(stores, drop, fake_predictor).read == 0
    source.put("a.png", png_bytes(generate_phantom(4, size=64)))  # replaced: other bytes, other size
    os.utime(tmp_path / "drop" / "a.png", (1, 1))
    s3 = _run(stores, drop, fake_predictor)
    assert drop.reads == ["a.png"] and len(s3.stored) == 1
    only_png = _run(stores, CountingDrop(source), fake_predictor, pattern="*.dcm")
    assert only_png.listed == 1 and only_png.read == 0
    table = loading_report.counts_table(s1)
    assert dict(zip(table["what"], table["value"]))["refused"] == 1


@pytest.mark.unit
def test_many_parts_are_compacted_into_one(sqlite_engine, settings, fake_predictor, tmp_path, monkeypatch):
    monkeypatch.setattr(loading, "COMPACT_AFTER", 3)
    source = LocalLake(tmp_path / "drop")
    lake = LocalLake(tmp_path / "lake")
    stores = Stores.open(settings, engine=sqlite_engine, lake=lake)
    for i in range(5):
        _drop_pngs(source.put, 10 * i, 1)
        _run(stores, CountingDrop(source), fake_predictor)
    parts = [o.key for o in lake.list(layout.LOADING_PREFIX)]
    assert len(parts) <= 3
    drop = CountingDrop(source)
    assert _run(stores, drop, fake_predictor).already_seen == 5 and drop.reads == []


@pytest.mark.unit
def test_a_missing_source_is_one_clear_error(sqlite_engine, settings, fake_predictor, tmp_path):
    stores = Stores.open(settings, engine=sqlite_engine, lake=LocalLake(tmp_path / "lake"))
    with pytest.raises(InputError, match="does not exist"):
        loading.load_drop(stores, str(tmp_path / "nowhere"), predictor=fake_predictor)
    with pytest.raises(InputError, match="no source to load"):
        loading.load_drop(stores, "", predictor=fake_predictor)
    assert loading.normalize_source("s3://b/p/") == loading.normalize_source("s3://b/p") == "s3://b/p/"
