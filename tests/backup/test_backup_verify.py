"""Verification guards the purge: a lake copy that differs from its manifest stops everything (no Spark needed:
the committed run is written here with pyarrow in the job's layout)."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cxr.backup.job import run_backup
from cxr.backup.steps import verify_run
from cxr.backup.manifest import summarize_table
from cxr.stores.backup_reader import Manifest
from cxr.stores.layout import manifest_key
from cxr.stores.backup_reader import arrow_schema
from cxr.errors import IntegrityError
from cxr.stores.queries import JOINED_COLUMNS, joined_rows

pytestmark = pytest.mark.integration


def _commit_run(lake, engine, before, tmp_path) -> Manifest:  # noqa: ANN001
    with engine.connect() as c:
        rows = [dict(zip(JOINED_COLUMNS, r)) for r in c.execute(joined_rows(before=before))]
    table = pa.Table.from_pylist(rows, schema=arrow_schema())
    m = Manifest(run_id="20240301T000000Z-test", layout="month", before=before.isoformat(), created_at="t",
                 source="sqlite", summary=summarize_table(table))
    key = m.prefix + "year=2024/month=1/part-0.parquet"
    pq.write_table(table, tmp_path / "p.parquet")
    lake.put_file(key, tmp_path / "p.parquet")
    m.files = [{"key": key, "size": (tmp_path / "p.parquet").stat().st_size}]
    lake.put(manifest_key(m.run_id), m.to_json())
    lake.put(m.success_key, b"")
    return m


@pytest.mark.parametrize("db_engine", ["sqlite"], indirect=True)
def test_tampered_lake_copy_blocks_the_purge(history, local_lake, make_settings, tmp_path, bk):
    engine = history["engine"]
    m = _commit_run(local_lake, engine, bk.CUTOFF, tmp_path)
    assert verify_run(local_lake, m).ok
    before = bk.table_counts(engine)

    tampered = pq.read_table(tmp_path / "p.parquet").slice(1)  # one row lost in the lake
    pq.write_table(tampered, tmp_path / "t.parquet")
    local_lake.put_file(m.files[0]["key"], tmp_path / "t.parquet")
    checks = {c["check"]: c["ok"] for c in verify_run(local_lake, m).checks}
    assert not checks["rows"] and not checks["box_checksum"]  # row 0 is a box row of image 1

    with pytest.raises(IntegrityError, match="verification failed for pending run"):
        run_backup(make_settings(), before="2024-03-01", purge_db=True, force=True, engine=engine, lake=local_lake)
    assert bk.table_counts(engine) == before  # nothing deleted
