"""The append-only audit trail: one ``audit_event`` row per login, upload, image view, review,
export and user change, chained by hashes.

Each row records who (a cxr user, or ``os:<login>`` for a command run by an operator), their
role, the action, the object type and ids, the outcome, the client address, a small JSON
``detail`` (counts and fixed reasons, never a file name or a patient value) and the UTC time.
``row_hash`` is the sha256 of those fields plus ``prev_hash``, the previous row's ``row_hash``:
editing, removing or inserting a row breaks the chain from there on, and :func:`verify` names
the first row that does not hold. ``event_id`` is the previous one plus one, so a removed row
leaves a gap, and ``audit_head`` (one row) holds the chain's end, so a removed tail shows too.

Appends lock ``audit_head`` first (a locking read on MySQL, an UPDATE taking the write lock on
SQLite), so concurrent writers are numbered and chained one at a time. :func:`append` runs inside the
caller's DB transaction: the event commits with the work it records, or not at all. The
triggers of migration 0004 refuse UPDATE and DELETE on ``audit_event``.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from sqlalchemy import Connection, Engine, insert, select, update

from cxr.stores.schema import audit_event, audit_head

GENESIS = "0" * 64
HASHED_FIELDS = ("event_id", "time", "username", "role", "action", "object_type", "object_ids", "outcome",
                 "client_addr", "detail", "prev_hash")
#: What is audited. ``view_image``: a stored image opened in the dashboard.
ACTIONS = ("login", "logout", "upload", "view_image", "review", "review_import", "export", "user_add",
           "user_disable", "user_enable", "user_password")
Outcome = Literal["success", "failure", "denied"]
OPERATOR_ROLE = "operator"


@dataclass(frozen=True)
class Actor:
    """Who acts: a signed-in user (``role`` one of the ROLES) or an operator at the command line."""

    username: str | None
    role: str | None
    client_addr: str | None = None
    user_id: int | None = None

    @classmethod
    def operator(cls) -> Actor:
        """The person running a ``cxr`` command: ``os:<login name>``, role ``operator``."""
        try:
            login = getpass.getuser()
        except (KeyError, OSError):  # no passwd entry (a bare container)
            login = f"uid{os.getuid()}"
        return cls(f"os:{login}"[:64], OPERATOR_ROLE, "local")


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.isoformat(sep=" ", timespec="microseconds")
    return str(value)


def row_hash(row: Mapping[str, Any]) -> str:
    """sha256 of a row's :data:`HASHED_FIELDS` (NULL and '' hash alike only where the DB keeps them apart)."""
    payload = json.dumps([[f, row.get(f) is None, _text(row.get(f))] for f in HASHED_FIELDS], separators=(",", ":"))
    return hashlib.sha256(payload.encode()).hexdigest()


def _ids(object_ids: Iterable[object] | object | None) -> str | None:
    if object_ids is None:
        return None
    if isinstance(object_ids, (str, int)):
        object_ids = [object_ids]
    text = ",".join(str(int(i)) for i in object_ids)  # type: ignore[union-attr]
    return (text[:250] + ",...") if len(text) > 254 else (text or None)


def append(conn: Connection, actor: Actor, action: str, *, outcome: Outcome = "success",
           object_type: str | None = None, object_ids: Iterable[object] | object | None = None,
           detail: Mapping[str, Any] | None = None, now: datetime | None = None) -> int:
    """Append one event in the caller's transaction (call it last: it holds the chain's lock); its id."""
    if action not in ACTIONS:
        raise ValueError(f"unknown audit action {action!r}")
    head = select(audit_head.c.last_event_id, audit_head.c.last_hash).where(audit_head.c.head_id == 1)
    if conn.dialect.name == "sqlite":  # an UPDATE first takes SQLite's write lock (a read first could not upgrade)
        conn.execute(update(audit_head).where(audit_head.c.head_id == 1)
                     .values(last_event_id=audit_head.c.last_event_id + 1))
        event_id, prev = conn.execute(head).one()
    else:  # MySQL/MariaDB: a locking read of the one head row serializes appends
        last, prev = conn.execute(head.with_for_update()).one()
        event_id = int(last) + 1
    row: dict[str, Any] = {
        "event_id": int(event_id), "time": now or utcnow(), "username": actor.username, "role": actor.role,
        "action": action, "object_type": object_type, "object_ids": _ids(object_ids), "outcome": outcome,
        "client_addr": (actor.client_addr or None) and str(actor.client_addr)[:64],
        "detail": json.dumps(dict(detail), sort_keys=True, default=str)[:512] if detail else None, "prev_hash": prev,
    }
    row["row_hash"] = row_hash(row)
    conn.execute(insert(audit_event).values(**row))
    conn.execute(update(audit_head).where(audit_head.c.head_id == 1)
                 .values(last_event_id=int(event_id), last_hash=row["row_hash"]))
    return int(event_id)


def record(engine: Engine, actor: Actor, action: str, **kwargs: Any) -> int:
    """:func:`append` in a transaction of its own (for events that record no other write: logins, views)."""
    with engine.begin() as conn:
        return append(conn, actor, action, **kwargs)


# -- reading and verifying ------------------------------------------------------------------------
@dataclass(frozen=True)
class Verification:
    ok: bool
    checked: int
    first_bad: int | None = None  # event_id of the first row that does not hold (or the head's id)
    reason: str = ""
    last_event_id: int | None = None
    last_hash: str | None = None

    def line(self) -> str:
        if self.ok:
            return f"audit chain intact: {self.checked} event(s), last {self.last_event_id or 0}"
        return f"audit chain broken at event {self.first_bad}: {self.reason} ({self.checked} event(s) checked)"


def _stream(engine: Engine) -> Iterator[dict[str, Any]]:
    with engine.connect() as conn:
        result = conn.execution_options(yield_per=5000).execute(select(audit_event).order_by(audit_event.c.event_id))
        for r in result:
            yield dict(r._mapping)


def check_chain(rows: Iterable[Mapping[str, Any]], *, prev_hash: str = GENESIS,
                first_id: int = 1) -> Verification:
    """Check rows in event_id order (pure): numbering, links and each row's own hash."""
    expected_id, prev, n = first_id, prev_hash, 0
    for r in rows:
        eid = int(r["event_id"])
        if eid != expected_id:
            why = f"event(s) {expected_id}..{eid - 1} missing" if eid > expected_id else "event_id out of order"
            return Verification(False, n, eid, why)
        if r["prev_hash"] != prev:
            return Verification(False, n, eid, "prev_hash does not match the previous event's row_hash")
        if row_hash(r) != r["row_hash"]:
            return Verification(False, n, eid, "the row differs from what its row_hash recorded (edited)")
        prev, expected_id, n = r["row_hash"], eid + 1, n + 1
    return Verification(True, n, None, "", expected_id - 1 if n else None, prev)


def verify(engine: Engine) -> Verification:
    """The whole chain in the DB, and its end against ``audit_head``."""
    result = check_chain(_stream(engine))
    if not result.ok:
        return result
    with engine.connect() as conn:
        last_id, last_hash = conn.execute(select(audit_head.c.last_event_id, audit_head.c.last_hash)
                                          .where(audit_head.c.head_id == 1)).one()
    if int(last_id) != (result.last_event_id or 0) or last_hash != (result.last_hash or GENESIS):
        return Verification(False, result.checked, int(last_id),
                            f"audit_head says the chain ends at event {last_id}, the table at "
                            f"{result.last_event_id or 0} (rows removed from the end?)")
    return result


def events(engine: Engine, *, username: str | None = None, since: datetime | None = None,
           action: str | None = None, limit: int | None = None) -> list[dict[str, Any]]:
    """Events, oldest first, optionally of one user, one action, at or after ``since``."""
    q = select(audit_event).order_by(audit_event.c.event_id)
    if username is not None:
        q = q.where(audit_event.c.username == username)
    if since is not None:
        q = q.where(audit_event.c.time >= since)
    if action is not None:
        q = q.where(audit_event.c.action == action)
    if limit is not None:
        q = q.order_by(None).order_by(audit_event.c.event_id.desc()).limit(int(limit))
    with engine.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(q)]
    return sorted(rows, key=lambda r: r["event_id"])
