"""``cxr db``: the metadata DB's schema (Alembic migrations) and a quick look at its rows."""

from __future__ import annotations

import typer

db = typer.Typer(help="Metadata DB (SQLite default, MySQL/MariaDB as on RDS): migrations and counts.", no_args_is_help=True)


@db.command("upgrade")
def upgrade(revision: str = typer.Argument("head", help="Alembic revision to upgrade to.")) -> None:
    """Create or migrate the tables: image, transaction, pred_bounding_box, and the people tables
    (app_user, user_session, audit_event, audit_head, review, review_box)."""
    from cxr.stores import db as dbstore
    from cxr.stores.schema import PEOPLE_TABLES

    engine = dbstore.engine_from_settings()
    rev = dbstore.upgrade(engine, revision)
    names = dbstore.table_names(engine)
    people = {t.name for t in PEOPLE_TABLES}
    typer.echo(f"{dbstore.redact(str(engine.url))}: at revision {rev}; tables: "
               f"{', '.join(n for n in names if n not in people)}; people: {', '.join(n for n in names if n in people)}")


@db.command("status")
def status() -> None:
    """Show the DB URL (password masked), its revision and row counts."""
    from sqlalchemy import func, select

    from cxr.stores import db as dbstore
    from cxr.stores.schema import PEOPLE_TABLES, TABLES

    engine = dbstore.engine_from_settings()
    dbstore.check_connection(engine)
    typer.echo(f"url: {dbstore.redact(str(engine.url))}")
    typer.echo(f"revision: {dbstore.current_revision(engine) or 'none (run `cxr db upgrade`)'}")
    present = set(dbstore.table_names(engine))
    with engine.connect() as conn:
        for table in TABLES + PEOPLE_TABLES:
            n = conn.execute(select(func.count()).select_from(table)).scalar_one() if table.name in present else "missing"
            typer.echo(f"{table.name}: {n}")


def register(root: typer.Typer) -> None:
    root.add_typer(db, name="db")
