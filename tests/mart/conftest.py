"""Mart fixtures: warehouse documents inserted directly, PNG renditions put in the lake."""

from __future__ import annotations

import pytest

from mart_docs import populate


@pytest.fixture
def populated(warehouse_db, lake):
    """``fill(docs)`` -> (warehouse_db, lake) with the documents and their renditions stored."""

    def fill(docs, **kw):
        populate(warehouse_db, lake, docs, **kw)
        return warehouse_db, lake

    return fill
