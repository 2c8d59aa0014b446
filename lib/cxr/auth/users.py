"""Users and roles in the metadata DB (``app_user``), passwords as argon2id hashes, lock-out.

Roles, least to most: ``uploader`` (uploads, sees their own uploads), ``radiologist`` (also
reviews anyone's), ``admin`` (also manages users). Every change of a user is audited in the same
DB transaction. A password is only ever handled as an argon2 hash (argon2-cffi, the hasher
jupyter_server uses); a failed sign-in counts against the user, and after
``CXR_LOGIN_MAX_FAILURES`` in a row the account is locked for ``CXR_LOCKOUT_MINUTES``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import Connection, Engine, insert, select, update
from sqlalchemy.exc import IntegrityError as SAIntegrityError

from cxr.auth.audit import Actor, append, utcnow
from cxr.config import Settings
from cxr.errors import InputError
from cxr.stores.schema import ROLES, Role, app_user, user_session

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
MIN_PASSWORD = 10
_hasher = PasswordHasher()
#: Verified against when the user is unknown, so that a wrong name costs as long as a wrong password.
_DUMMY_HASH = _hasher.hash("cxr: no such user")


@dataclass(frozen=True)
class Principal:
    """A signed-in user as the rest of cxr sees them."""

    user_id: int
    username: str
    role: Role

    def may(self, role: Role) -> bool:
        """True when this user's role is ``role`` or above it."""
        return ROLES.index(self.role) >= ROLES.index(role)

    def actor(self, client_addr: str | None = None) -> Actor:
        return Actor(self.username, self.role, client_addr, self.user_id)


def check_name(name: str) -> str:
    if not _NAME.match(name or ""):
        raise InputError(f"invalid user name {name!r}: 1-64 letters, digits, '.', '_', '@', '-'")
    if name.startswith("os:"):
        raise InputError("user names may not start with 'os:' (the audit trail's operator prefix)")
    return name


def check_role(role: str) -> Role:
    if role not in ROLES:
        raise InputError(f"unknown role {role!r}; use one of {', '.join(ROLES)}")
    return role  # type: ignore[return-value]


def hash_password(password: str) -> str:
    if len(password) < MIN_PASSWORD:
        raise InputError(f"the password is too short: at least {MIN_PASSWORD} characters")
    return _hasher.hash(password)


def add_user(engine: Engine, name: str, role: str, password: str | None, *, actor: Actor) -> Principal:
    """Create an enabled user; ``password`` None makes an account that signs in only through the SSO proxy."""
    name, role = check_name(name), check_role(role)
    hashed = hash_password(password) if password is not None else None
    try:
        with engine.begin() as conn:
            uid = conn.execute(insert(app_user).values(
                username=name, role=role, password_hash=hashed, enabled=True, created_at=utcnow(),
                failed_logins=0)).inserted_primary_key[0]
            append(conn, actor, "user_add", object_type="user", object_ids=[uid],
                   detail={"role": role, "password": hashed is not None})
    except SAIntegrityError:
        raise InputError(f"user {name!r} exists already") from None
    return Principal(int(uid), name, role)


def _row(conn: Connection, name: str) -> dict | None:
    r = conn.execute(select(app_user).where(app_user.c.username == name)).first()
    return dict(r._mapping) if r is not None else None


def get_user(engine: Engine, name: str) -> dict | None:
    with engine.connect() as conn:
        return _row(conn, name)


def principal_of(row: dict) -> Principal:
    return Principal(int(row["user_id"]), row["username"], row["role"])


def list_users(engine: Engine) -> list[dict]:
    """Every user without the password hash, by name."""
    cols = [c for c in app_user.c if c.name != "password_hash"]
    with engine.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(select(*cols, app_user.c.password_hash.is_not(None)
                                                              .label("has_password")).order_by(app_user.c.username))]
    return rows


def set_enabled(engine: Engine, name: str, enabled: bool, *, actor: Actor) -> None:
    """Enable or disable a user; disabling also ends their open sessions."""
    with engine.begin() as conn:
        row = _row(conn, check_name(name))
        if row is None:
            raise InputError(f"no user {name!r}")
        values: dict = {"enabled": enabled}
        if enabled:
            values.update(failed_logins=0, locked_until=None)
        conn.execute(update(app_user).where(app_user.c.user_id == row["user_id"]).values(**values))
        if not enabled:
            conn.execute(update(user_session).where(user_session.c.user_id == row["user_id"],
                                                    user_session.c.ended_at.is_(None)).values(ended_at=utcnow()))
        append(conn, actor, "user_enable" if enabled else "user_disable", object_type="user",
               object_ids=[row["user_id"]])


def set_password(engine: Engine, name: str, password: str, *, actor: Actor) -> None:
    hashed = hash_password(password)
    with engine.begin() as conn:
        row = _row(conn, check_name(name))
        if row is None:
            raise InputError(f"no user {name!r}")
        conn.execute(update(app_user).where(app_user.c.user_id == row["user_id"])
                     .values(password_hash=hashed, failed_logins=0, locked_until=None))
        append(conn, actor, "user_password", object_type="user", object_ids=[row["user_id"]])


# -- signing in ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class LoginResult:
    principal: Principal | None
    reason: str  # "ok" | "unknown user" | "bad password" | "locked" | "disabled" | "no password"


def _verify(hashed: str | None, password: str) -> bool:
    try:
        return _hasher.verify(hashed or _DUMMY_HASH, password) and hashed is not None
    except (VerificationError, InvalidHashError):
        return False


def authenticate(engine: Engine, name: str, password: str, settings: Settings, *, client_addr: str | None,
                 now: datetime | None = None) -> LoginResult:
    """Check a name and password; count failures, lock out, and audit the attempt (success or not).

    An unknown name is audited without it (a mistyped password in the name field must not be
    stored); a known user's failure names the user and the reason.
    """
    now = now or utcnow()
    with engine.begin() as conn:
        row = _row(conn, name) if _NAME.match(name or "") else None
        if row is None:
            _verify(None, password)
            append(conn, Actor(None, None, client_addr), "login", outcome="failure", detail={"reason": "unknown user"})
            return LoginResult(None, "unknown user")
        actor = Actor(row["username"], row["role"], client_addr, int(row["user_id"]))
        ok = _verify(row["password_hash"], password)
        reason = "ok" if ok else ("no password" if row["password_hash"] is None else "bad password")
        if not row["enabled"]:
            reason = "disabled"
        elif row["locked_until"] is not None and row["locked_until"] > now:
            reason = "locked"
        if reason != "ok":
            values: dict = {}
            if reason in ("bad password", "no password"):
                failures = int(row["failed_logins"] or 0) + 1
                values["failed_logins"] = failures
                if failures >= settings.login_max_failures:
                    values.update(locked_until=now + timedelta(minutes=settings.lockout_minutes), failed_logins=0)
                    reason = "bad password; locked"
            if values:
                conn.execute(update(app_user).where(app_user.c.user_id == row["user_id"]).values(**values))
            append(conn, actor, "login", outcome="failure", object_type="user", object_ids=[row["user_id"]],
                   detail={"reason": reason})
            return LoginResult(None, reason)
        values = {"failed_logins": 0, "locked_until": None, "last_login_at": now}
        if _hasher.check_needs_rehash(row["password_hash"]):
            values["password_hash"] = _hasher.hash(password)
        conn.execute(update(app_user).where(app_user.c.user_id == row["user_id"]).values(**values))
        append(conn, actor, "login", object_type="user", object_ids=[row["user_id"]], detail={"provider": "password"})
    return LoginResult(principal_of(row), "ok")
