"""``cxr users``: the dashboard's users and roles; ``cxr audit``: the append-only audit trail."""

from __future__ import annotations

import json
from typing import Optional

import typer

users = typer.Typer(help="Dashboard users and roles (uploader, radiologist, admin). Changes are audited.",
                    no_args_is_help=True)
audit = typer.Typer(help="The append-only audit trail: verify its hash chain, list events.", no_args_is_help=True)


def _engine():
    from cxr.stores import db

    engine = db.engine_from_settings()
    db.check_connection(engine)
    return engine


def _read_password(confirm: bool = True) -> str:
    """From a prompt on a terminal (asked twice), else the first line of stdin; never an argument."""
    import getpass
    import sys

    from cxr.errors import InputError

    if sys.stdin.isatty():
        first = getpass.getpass("Password: ")
        if confirm and getpass.getpass("Repeat it: ") != first:
            raise InputError("the two passwords differ; nothing changed")
        return first
    line = sys.stdin.readline()
    if not line:
        raise InputError("no password on stdin (pipe one line, or run on a terminal to be asked)")
    return line.rstrip("\r\n")


@users.command("add")
def add(
    name: str = typer.Argument(..., help="User name (letters, digits, . _ @ -)."),
    role: str = typer.Option(..., "--role", help="uploader (uploads, sees own uploads), radiologist (also reviews "
                             "anyone's), admin (also manages users)."),
    no_password: bool = typer.Option(False, "--no-password", help="No password: the user signs in only through "
                                     "the SSO proxy (CXR_AUTH_PROVIDER=proxy)."),
) -> None:
    """Add a user. The password is asked for on a terminal, or read from stdin; never an argument."""
    from cxr.auth.audit import Actor
    from cxr.auth.users import add_user, check_name, check_role

    check_name(name)
    check_role(role)
    password = None if no_password else _read_password()
    p = add_user(_engine(), name, role, password, actor=Actor.operator())
    typer.echo(f"added user {p.username} (role {p.role}, id {p.user_id})")


@users.command("list")
def list_cmd(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """List users: name, role, enabled, password or SSO only, last sign-in, lock."""
    from cxr.auth.users import list_users

    rows = list_users(_engine())
    if as_json:
        typer.echo(json.dumps(rows, indent=2, default=str))
        return
    typer.echo(f"{'user':<24} {'role':<12} {'enabled':<8} {'sign-in':<9} {'last sign-in (UTC)':<20} locked until")
    for r in rows:
        last = f"{r['last_login_at']:%Y-%m-%d %H:%M:%S}" if r["last_login_at"] else "-"
        locked = f"{r['locked_until']:%Y-%m-%d %H:%M:%S}" if r["locked_until"] else "-"
        typer.echo(f"{r['username']:<24} {r['role']:<12} {'yes' if r['enabled'] else 'no':<8} "
                   f"{'password' if r['has_password'] else 'SSO':<9} {last:<20} {locked}")


@users.command("disable")
def disable(name: str = typer.Argument(..., help="User name.")) -> None:
    """Disable a user and end their open sessions (their rows and reviews stay)."""
    from cxr.auth.audit import Actor
    from cxr.auth.users import set_enabled

    set_enabled(_engine(), name, False, actor=Actor.operator())
    typer.echo(f"disabled {name}")


@users.command("enable")
def enable(name: str = typer.Argument(..., help="User name.")) -> None:
    """Enable a user again (and lift a lock-out)."""
    from cxr.auth.audit import Actor
    from cxr.auth.users import set_enabled

    set_enabled(_engine(), name, True, actor=Actor.operator())
    typer.echo(f"enabled {name}")


@users.command("passwd")
def passwd(name: str = typer.Argument(..., help="User name.")) -> None:
    """Set a user's password (asked for on a terminal, or read from stdin)."""
    from cxr.auth.audit import Actor
    from cxr.auth.users import check_name, set_password

    check_name(name)
    set_password(_engine(), name, _read_password(), actor=Actor.operator())
    typer.echo(f"password of {name} changed")


@audit.command("verify")
def verify() -> None:
    """Check the hash chain; exit 4 naming the first row that does not hold."""
    from cxr.auth.audit import verify as verify_chain
    from cxr.errors import IntegrityError

    result = verify_chain(_engine())
    if not result.ok:
        raise IntegrityError(result.line())
    typer.echo(result.line())


@audit.command("show")
def show(
    user: Optional[str] = typer.Option(None, "--user", help="Only this user's events (os:<login> for commands)."),
    since: Optional[str] = typer.Option(None, "--since", help="Only events at or after this UTC date/time (ISO)."),
    action: Optional[str] = typer.Option(None, "--action", help="Only this action (login, upload, review, ...)."),
    limit: int = typer.Option(200, "--limit", min=1, help="At most this many (the newest)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON lines."),
) -> None:
    """List audit events, oldest first."""
    from cxr.auth.audit import events
    from cxr.mart.filters import to_utc_naive

    rows = events(_engine(), username=user, since=to_utc_naive(since, "since"), action=action, limit=limit)
    for r in rows:
        if as_json:
            typer.echo(json.dumps({k: v for k, v in r.items() if k not in ("prev_hash",)}, default=str))
            continue
        ids = f" {r['object_type']} {r['object_ids']}" if r["object_ids"] else ""
        typer.echo(f"{r['event_id']:>7} {r['time']:%Y-%m-%d %H:%M:%S} {r['username'] or '(unknown)':<20} "
                   f"{r['role'] or '-':<11} {r['action']:<13} {r['outcome']:<8}{ids} {r['client_addr'] or ''} "
                   f"{r['detail'] or ''}".rstrip())


def register(root: typer.Typer) -> None:
    root.add_typer(users, name="users")
    root.add_typer(audit, name="audit")
