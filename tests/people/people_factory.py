"""Users and sessions for tests: a user of a role, signed in, with the kernel bound to the session."""

from __future__ import annotations

from sqlalchemy import Engine

from cxr.auth.audit import Actor
from cxr.auth.sessions import Session, bind_kernel, open_session, session_of, token_hash
from cxr.auth.users import add_user, get_user, principal_of

PASSWORD = "correct horse battery"
OPERATOR = Actor("os:test", "operator", "local")


def user(engine: Engine, name: str, role: str, password: str | None = PASSWORD):
    """The user ``name`` (created with ``role`` and ``password`` unless it exists)."""
    row = get_user(engine, name)
    return principal_of(row) if row is not None else add_user(engine, name, role, password, actor=OPERATOR)


def sign_in(engine: Engine, role: str = "uploader", name: str | None = None, *, bind: bool = True,
            client: str = "127.0.0.1") -> Session:
    """A valid session of a ``role`` user; the dashboard kernel is bound to it unless ``bind`` is False."""
    p = user(engine, name or f"{role}1", role)
    token = open_session(engine, p, kind="password", minutes=60, client_addr=client)
    if bind:
        bind_kernel(token_hash(token))
    s = session_of(engine, token_hash(token))
    assert s is not None
    return s
