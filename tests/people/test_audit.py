"""The audit trail: a hash chain that `cxr audit verify` checks, append-only by triggers (SQLite, MariaDB)."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from cxr.auth import audit
from cxr.auth.audit import Actor

ANA = Actor("ana", "radiologist", "10.0.0.7", 1)


def _fill(engine, n: int = 5) -> None:
    for i in range(n):
        audit.record(engine, ANA, "view_image", object_type="transaction", object_ids=[i + 1], detail={"n": i})


def test_chain_verifies_and_records_who_what_when(db_engine):
    _fill(db_engine)
    result = audit.verify(db_engine)
    assert result.ok and result.checked == 5 and result.last_event_id == 5
    rows = audit.events(db_engine, username="ana")
    assert [r["event_id"] for r in rows] == [1, 2, 3, 4, 5]
    assert rows[0]["client_addr"] == "10.0.0.7" and rows[0]["object_ids"] == "1" and rows[0]["outcome"] == "success"
    assert rows[1]["prev_hash"] == rows[0]["row_hash"] and rows[0]["prev_hash"] == audit.GENESIS
    assert rows[0]["time"].microsecond == rows[0]["time"].microsecond  # exact time round trip: the hash held


@pytest.mark.integration
def test_mariadb_triggers_refuse_update_and_delete(mariadb_engine):
    _fill(mariadb_engine, 3)
    for sql in ("UPDATE audit_event SET username = 'mallory' WHERE event_id = 2", "DELETE FROM audit_event"):
        with pytest.raises(DBAPIError, match="append-only"):
            with mariadb_engine.begin() as conn:
                conn.execute(text(sql))
    assert audit.verify(mariadb_engine).ok and len(audit.events(mariadb_engine)) == 3


def test_sqlite_triggers_refuse_update_and_delete(sqlite_engine):
    _fill(sqlite_engine, 2)
    for sql in ("UPDATE audit_event SET outcome = 'failure'", "DELETE FROM audit_event WHERE event_id = 1"):
        with pytest.raises(DBAPIError, match="append-only"):
            with sqlite_engine.begin() as conn:
                conn.execute(text(sql))


def test_verify_names_the_first_edited_row_after_the_trigger_is_dropped(sqlite_engine, tmp_path, cli):
    _fill(sqlite_engine, 6)
    env = {"CXR_DB_URL": str(sqlite_engine.url)}
    ok = cli("audit", "verify", env=env)
    assert ok.returncode == 0 and "intact: 6 event(s)" in ok.stdout, ok.stderr
    with sqlite_engine.begin() as conn:
        conn.execute(text("DROP TRIGGER audit_event_no_update"))
        conn.execute(text("UPDATE audit_event SET username = 'mallory' WHERE event_id = 4"))
    bad = cli("audit", "verify", env=env)
    assert bad.returncode == 4 and "broken at event 4" in bad.stderr and "edited" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_verify_finds_a_removed_row_and_a_removed_tail(sqlite_engine):
    _fill(sqlite_engine, 5)
    with sqlite_engine.begin() as conn:
        conn.execute(text("DROP TRIGGER audit_event_no_delete"))
        conn.execute(text("DELETE FROM audit_event WHERE event_id = 5"))
    tail = audit.verify(sqlite_engine)
    assert not tail.ok and tail.first_bad == 5 and "audit_head" in tail.reason
    with sqlite_engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_event WHERE event_id = 2"))
    gap = audit.verify(sqlite_engine)
    assert not gap.ok and gap.first_bad == 3 and "missing" in gap.reason


def test_concurrent_appends_stay_one_chain(db_engine):
    def work():
        for _ in range(10):
            audit.record(db_engine, ANA, "login")

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    result = audit.verify(db_engine)
    assert result.ok and result.checked == 40


def test_unknown_action_is_a_bug(sqlite_engine):
    with pytest.raises(ValueError):
        audit.record(sqlite_engine, ANA, "coffee")


def test_audit_rows_hold_no_patient_value(make_settings, sqlite_engine, local_lake):
    """A DICOM named after its patient, uploaded, viewed and reviewed: no identifier in any audit row."""
    from ingest_factory import FAKE, FakePredictor, gradient, make_dicom
    from people_factory import sign_in

    from cxr.app.dashboard import Dashboard

    session = sign_in(sqlite_engine, "radiologist", "rita")
    d = Dashboard(make_settings(), predictor=FakePredictor(), engine=sqlite_engine, lake=local_lake, session=session)
    name = f"{FAKE['PatientName'].replace('^', '_')}_{FAKE['PatientID']}.dcm"
    assert d.handle_upload(name, make_dicom(gradient(bits=16)))
    assert d.open_review(d.last_saved.transaction_id) and d.review.no_finding() is not None
    with sqlite_engine.connect() as conn:
        rows = [repr(tuple(r)) for r in conn.execute(text("SELECT * FROM audit_event"))]
    assert len(rows) >= 4
    from cxr.stores.schema import ROLES

    tokens = {t for v in FAKE.values() for t in str(v).replace("^", " ").split()
              if len(t) >= 4 and t.lower() not in ROLES}  # ("Radiologist^Bartholomew" is a fake name, "radiologist" a role)
    leaked = {t for t in tokens if any(t.lower() in r.lower() for r in rows)}
    assert not leaked, leaked
