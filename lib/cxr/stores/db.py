"""The metadata DB adapter: engine creation, clear connection errors, Alembic upgrades.

SQLite (the embedded default) and MySQL/MariaDB (``mysql+pymysql://``, as on RDS) are
both supported through SQLAlchemy 2. Every statement is built with SQLAlchemy Core, so
values are always bound parameters, never pasted into SQL text.
"""

from __future__ import annotations

from pathlib import Path

from collections.abc import Iterator
from contextlib import contextmanager
from sqlite3 import Connection as SQLiteConnection
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, create_engine, event, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, OperationalError, ProgrammingError, SQLAlchemyError

from cxr.config import Settings, get_settings
from cxr.errors import ConfigError

MIGRATIONS_DIR = Path(__file__).with_name("migrations")

# MySQL client error codes -> what to tell a person.
_MYSQL_ERRORS = {
    1045: "access denied: wrong user or password",
    1049: "unknown database",
    2003: "cannot reach the DB server",
    2005: "unknown DB host",
    2013: "lost connection to the DB server",
}


def make_engine(url: str, *, connect_timeout: int = 10, pool_size: int = 5) -> Engine:
    """Create an engine for ``url``; SQLite gets foreign keys, WAL and a busy timeout."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ConfigError(f"not a database URL: {redact(url)}", setting="CXR_DB_URL") from None
    kwargs: dict[str, Any] = {"pool_pre_ping": True, "future": True}
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        kwargs["connect_args"] = {"timeout": 30}
    else:
        kwargs["connect_args"] = {"connect_timeout": connect_timeout}
        kwargs["pool_size"] = pool_size
        kwargs["pool_recycle"] = 3600
    try:
        engine = create_engine(parsed, **kwargs)
    except (NoSuchModuleError, ArgumentError) as exc:
        raise ConfigError(f"unsupported database URL {redact(url)}: {exc}", setting="CXR_DB_URL") from None
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def _sqlite_pragmas(dbapi_conn: SQLiteConnection, _record: object) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def redact(url: str) -> str:
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<unparseable URL>"


def describe_error(exc: SQLAlchemyError) -> str:
    """One line for a connection-level DB error."""
    orig = getattr(exc, "orig", None)
    code = orig.args[0] if orig is not None and getattr(orig, "args", None) else None
    if isinstance(code, int) and code in _MYSQL_ERRORS:
        return _MYSQL_ERRORS[code]
    return str(orig or exc).splitlines()[0]


def check_connection(engine: Engine) -> None:
    """Open one connection, or raise a one-line :class:`ConfigError` naming CXR_DB_URL."""
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except OperationalError as exc:
        raise ConfigError(f"{describe_error(exc)} ({redact(str(engine.url))})", setting="CXR_DB_URL") from None


def engine_from_settings(settings: Settings | None = None) -> Engine:
    s = settings or get_settings()
    return make_engine(s.resolved_db_url, connect_timeout=s.db_connect_timeout)


def alembic_config(engine: Engine) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", str(engine.url).replace("%", "%%"))
    return cfg


def upgrade(engine: Engine, revision: str = "head") -> str:
    """Run Alembic migrations up to ``revision``; return the revision now in force."""
    check_connection(engine)
    cfg = alembic_config(engine)
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision() or "base"


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def require_current(engine: Engine) -> None:
    """A one-line :class:`ConfigError` unless the DB is migrated to the newest revision."""
    from alembic.script import ScriptDirectory  # only the long-running commands check this

    head = ScriptDirectory.from_config(alembic_config(engine)).get_current_head()
    rev = current_revision(engine)
    if rev != head:
        raise ConfigError(f"the DB is at revision {rev or 'none'}, not {head}: run `cxr db upgrade`",
                          setting="CXR_DB_URL")


def table_names(engine: Engine) -> list[str]:
    return sorted(inspect(engine).get_table_names())


@contextmanager
def reading(what: str = "reading the DB") -> Iterator[None]:
    """DB errors as one line naming CXR_DB_URL; an unmigrated DB says to run ``cxr db upgrade``."""
    try:
        yield
    except (OperationalError, ProgrammingError) as exc:
        why = describe_error(exc)
        hint = " (the DB has no cxr tables: run `cxr db upgrade`)" if "no such table" in why or "doesn't exist" in why else ""
        raise ConfigError(f"{what} failed: {why}{hint}", setting="CXR_DB_URL") from None
