"""The warehouse's watermark, in its ``etl_state`` collection (shared by stages 3, 4 and 5).

The watermark is the highest ``transaction_id`` loaded into the ``images`` collection. The
incremental load reads only transactions above it; the backup purge (stage 3) refuses to delete
transactions above it, so history never leaves the DB before the warehouse has it.

One document ``{_id: "images", watermark: <int>, updated_at: <UTC datetime>}``. Only plain
update operators are used (``$max``, ``$set``), which DocumentDB and SecantusDB both support.

A second one, ``{_id: "reviews", ...}`` (``state=REVIEWS``), is the highest ``review_id`` loaded:
reviews arrive after their transaction was loaded, and the backup purge keeps reviews above it.
"""

from __future__ import annotations

from datetime import UTC, datetime

from pymongo.database import Database

STATE_COLLECTION = "etl_state"
STATE_ID = "images"  # the collection whose load the watermark describes
REVIEWS = "reviews"  # the reviews loaded into it (highest review_id)


def get_watermark(database: Database, state: str = STATE_ID) -> int | None:
    """Highest ``transaction_id`` (``state="reviews"``: ``review_id``) loaded, or ``None`` when nothing was loaded."""
    doc = database[STATE_COLLECTION].find_one({"_id": state}, {"watermark": 1})
    if doc is None or doc.get("watermark") is None:
        return None
    return int(doc["watermark"])


def set_watermark(database: Database, value: int, *, monotonic: bool = True, state: str = STATE_ID) -> int | None:
    """Record ``value`` as the watermark; return the watermark now in force.

    ``monotonic`` (the default, used by incremental loads) only ever raises it (``$max``), so two
    concurrent runs leave the higher of their two values. A rebuild passes ``monotonic=False``:
    it has loaded the whole history and its value is the truth.
    """
    now = datetime.now(UTC).replace(tzinfo=None)
    update = {"$max": {"watermark": int(value)}, "$set": {"updated_at": now}} if monotonic else {
        "$set": {"watermark": int(value), "updated_at": now}
    }
    database[STATE_COLLECTION].update_one({"_id": state}, update, upsert=True)
    return get_watermark(database, state)


def clear_watermark(database: Database) -> None:
    """Forget the watermarks (the next incremental load reads every transaction and review in the DB)."""
    database[STATE_COLLECTION].delete_many({"_id": {"$in": [STATE_ID, REVIEWS]}})
