"""The one catalog of stores an entry point opens: the metadata DB, the lake and the warehouse.

An entry point (a CLI command, the dashboard, a notebook, a Glue or Spark task) opens one
:class:`Stores` from its :class:`~cxr.config.Settings` and passes it down; stage code asks it for
``engine``, ``lake`` or ``warehouse``. Each store is opened on first use, so a stage that never
touches the warehouse never starts or reaches one. Tests and callers that already hold a store
hand it in (``Stores.open(settings, engine=..., lake=...)``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pymongo.database import Database
from sqlalchemy import Engine

from cxr.config import Settings, get_settings
from cxr.stores.db import engine_from_settings
from cxr.stores.lake import Lake, lake_from_settings
from cxr.stores.warehouse import database_from_settings


@dataclass
class Stores:
    """Settings plus the stores they name, each opened once, on first use."""

    settings: Settings
    _engine: Engine | None = field(default=None, repr=False)
    _lake: Lake | None = field(default=None, repr=False)
    _warehouse: Database | None = field(default=None, repr=False)
    _opened: set[str] = field(default_factory=set, repr=False)  # what close() releases (not what was handed in)

    @classmethod
    def open(cls, settings: Settings | None = None, *, engine: Engine | None = None, lake: Lake | None = None,
             warehouse: Database | None = None) -> Stores:
        """The catalog for ``settings`` (default: the process's), with any store already open handed in."""
        return cls(settings or get_settings(), engine, lake, warehouse)

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            self._engine = engine_from_settings(self.settings)
            self._opened.add("engine")
        return self._engine

    @property
    def lake(self) -> Lake:
        if self._lake is None:
            self._lake = lake_from_settings(self.settings)
        return self._lake

    @property
    def warehouse(self) -> Database:
        if self._warehouse is None:
            self._warehouse = database_from_settings(self.settings)
            self._opened.add("warehouse")
        return self._warehouse

    def close(self) -> None:
        """Release what this catalog opened (pooled DB connections, the warehouse client)."""
        if self._engine is not None and "engine" in self._opened:
            self._engine.dispose()
        if self._warehouse is not None and "warehouse" in self._opened:
            self._warehouse.client.close()
        self._opened.clear()
