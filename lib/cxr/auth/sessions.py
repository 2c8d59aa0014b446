"""Sessions that expire (``user_session``), and the session a dashboard kernel acts for.

A sign-in creates a random token; the browser keeps it in a signed, HTTP-only cookie and the
DB keeps only its sha256 (``token_hash``), the session's user, its expiry
(``CXR_SESSION_MINUTES`` after the sign-in) and the client address. A session is valid while
it has not ended (logout, the user disabled), has not expired, and its user is enabled: every
request and every action of the dashboard checks this again, so disabling a user or signing out
stops an open page too.

The dashboard runs in a Voila kernel, which does not see the HTTP request. When a page starts
its kernel, the server's pre-launch hook binds the kernel to the page's session
(:func:`bind_kernel` with the token's hash: useless as a cookie), and the dashboard asks
:func:`kernel_principal` before each upload, view or review.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Engine, insert, select, update

from cxr.auth.audit import Actor, append, utcnow
from cxr.auth.users import Principal
from cxr.stores.schema import app_user, user_session


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class Session:
    principal: Principal
    token_hash: str
    expires_at: datetime
    client_addr: str | None
    kind: str

    def actor(self) -> Actor:
        return self.principal.actor(self.client_addr)


def open_session(engine: Engine, principal: Principal, *, kind: str, minutes: int, client_addr: str | None,
                 now: datetime | None = None) -> str:
    """A new session for ``principal``; returns its token (kept only by the browser)."""
    now = now or utcnow()
    token = secrets.token_urlsafe(32)
    with engine.begin() as conn:
        conn.execute(insert(user_session).values(
            token_hash=token_hash(token), user_id=principal.user_id, kind=kind, created_at=now,
            expires_at=now + timedelta(minutes=minutes), client_addr=(client_addr or None) and client_addr[:64]))
    return token


def session_of(engine: Engine, hashed: str, now: datetime | None = None) -> Session | None:
    """The valid session with this token hash, else None (ended, expired, or its user disabled)."""
    now = now or utcnow()
    q = (select(user_session.c.token_hash, user_session.c.expires_at, user_session.c.client_addr,
                user_session.c.kind, app_user.c.user_id, app_user.c.username, app_user.c.role)
         .select_from(user_session.join(app_user, app_user.c.user_id == user_session.c.user_id))
         .where(user_session.c.token_hash == hashed, user_session.c.ended_at.is_(None),
                user_session.c.expires_at > now, app_user.c.enabled.is_(True)))
    with engine.connect() as conn:
        r = conn.execute(q).first()
    if r is None:
        return None
    return Session(Principal(int(r.user_id), r.username, r.role), r.token_hash, r.expires_at, r.client_addr, r.kind)


def end_session(engine: Engine, hashed: str, *, client_addr: str | None = None) -> bool:
    """Sign out: end the session (audited); False when it was not open."""
    s = session_of(engine, hashed)
    if s is None:
        return False
    with engine.begin() as conn:
        conn.execute(update(user_session).where(user_session.c.token_hash == hashed).values(ended_at=utcnow()))
        append(conn, s.principal.actor(client_addr or s.client_addr), "logout", object_type="user",
               object_ids=[s.principal.user_id])
    return True


# -- the session a kernel acts for ----------------------------------------------------------------
_kernel_session: str | None = None


def bind_kernel(hashed: str) -> None:
    """Called by the cell the server's pre-launch hook puts first in the dashboard notebook."""
    global _kernel_session
    _kernel_session = hashed


def kernel_session(engine: Engine) -> Session | None:
    """The session this kernel was started for, while it is valid; None when there is none (or no longer)."""
    if _kernel_session is None:
        return None
    return session_of(engine, _kernel_session)
