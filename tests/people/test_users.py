"""Users and roles: argon2 hashes, `cxr users` (password from a prompt or stdin only), lock-out, sessions."""

from __future__ import annotations

from datetime import timedelta

import pytest
from people_factory import OPERATOR, PASSWORD, user
from sqlalchemy import select

from cxr.auth import audit, sessions, users
from cxr.auth.audit import utcnow
from cxr.errors import InputError
from cxr.stores.schema import app_user


def test_cli_adds_lists_and_disables_with_the_password_from_stdin(sqlite_engine, cli):
    env = {"CXR_DB_URL": str(sqlite_engine.url)}
    added = cli("users", "add", "rita", "--role", "radiologist", env=env, input_text=PASSWORD + "\n")
    assert added.returncode == 0, added.stderr
    with sqlite_engine.connect() as conn:
        hashed = conn.execute(select(app_user.c.password_hash).where(app_user.c.username == "rita")).scalar_one()
    assert hashed.startswith("$argon2id$") and PASSWORD not in hashed
    listed = cli("users", "list", env=env)
    assert "rita" in listed.stdout and "radiologist" in listed.stdout and "password" in listed.stdout
    # never from an argument: there is no such option
    refused = cli("users", "add", "eve", "--role", "admin", "--password", PASSWORD, env=env, input_text="")
    assert refused.returncode != 0 and users.get_user(sqlite_engine, "eve") is None
    assert cli("users", "disable", "rita", env=env).returncode == 0
    assert not users.get_user(sqlite_engine, "rita")["enabled"]
    actions = [e["action"] for e in audit.events(sqlite_engine)]
    assert actions == ["user_add", "user_disable"]
    assert all(e["username"].startswith("os:") for e in audit.events(sqlite_engine))


def test_cli_refusals_are_one_line(sqlite_engine, cli):
    env = {"CXR_DB_URL": str(sqlite_engine.url)}
    short = cli("users", "add", "sam", "--role", "uploader", env=env, input_text="short\n")
    assert short.returncode == 3 and "too short" in short.stderr and "Traceback" not in short.stderr
    role = cli("users", "add", "sam", "--role", "chief", env=env, input_text=PASSWORD + "\n")
    assert role.returncode == 3 and "unknown role" in role.stderr
    cli("users", "add", "sam", "--role", "uploader", env=env, input_text=PASSWORD + "\n", check=True)
    again = cli("users", "add", "sam", "--role", "uploader", env=env, input_text=PASSWORD + "\n")
    assert again.returncode == 3 and "exists already" in again.stderr


def test_wrong_password_is_refused_counted_audited_and_locks_out(db_engine, make_settings):
    settings = make_settings(login_max_failures=3, lockout_minutes=10)
    user(db_engine, "ulla", "uploader")
    for _ in range(3):
        r = users.authenticate(db_engine, "ulla", "wrong password!", settings, client_addr="10.1.1.1")
        assert r.principal is None
    locked = users.authenticate(db_engine, "ulla", PASSWORD, settings, client_addr="10.1.1.1")
    assert locked.principal is None and locked.reason == "locked"
    later = users.authenticate(db_engine, "ulla", PASSWORD, settings, client_addr="10.1.1.1",
                               now=utcnow() + timedelta(minutes=11))
    assert later.principal is not None and later.principal.role == "uploader"
    logins = audit.events(db_engine, action="login")
    assert [e["outcome"] for e in logins] == ["failure"] * 4 + ["success"]
    assert all(e["username"] == "ulla" and e["client_addr"] == "10.1.1.1" for e in logins)
    assert "bad password" in logins[0]["detail"] and "locked" in logins[3]["detail"]
    assert PASSWORD not in str(logins) and "wrong password" not in str(logins)


def test_unknown_name_is_audited_without_the_name(sqlite_engine, make_settings):
    r = users.authenticate(sqlite_engine, PASSWORD, "x", make_settings(), client_addr="10.1.1.2")
    assert r.principal is None and r.reason == "unknown user"
    (e,) = audit.events(sqlite_engine)
    assert e["username"] is None and PASSWORD not in str(e)


def test_sessions_expire_end_and_die_with_a_disabled_user(sqlite_engine):
    p = user(sqlite_engine, "rob", "radiologist")
    token = sessions.open_session(sqlite_engine, p, kind="password", minutes=30, client_addr="127.0.0.1")
    hashed = sessions.token_hash(token)
    s = sessions.session_of(sqlite_engine, hashed)
    assert s is not None and s.principal == p and s.client_addr == "127.0.0.1"
    assert sessions.session_of(sqlite_engine, hashed, now=utcnow() + timedelta(minutes=31)) is None
    users.set_enabled(sqlite_engine, "rob", False, actor=OPERATOR)
    assert sessions.session_of(sqlite_engine, hashed) is None
    users.set_enabled(sqlite_engine, "rob", True, actor=OPERATOR)
    assert sessions.session_of(sqlite_engine, hashed) is None  # disabling ended it for good
    token2 = sessions.open_session(sqlite_engine, p, kind="password", minutes=30, client_addr=None)
    assert sessions.end_session(sqlite_engine, sessions.token_hash(token2))
    assert sessions.session_of(sqlite_engine, sessions.token_hash(token2)) is None
    assert audit.events(sqlite_engine)[-1]["action"] == "logout"


def test_roles_are_ordered():
    p = users.Principal(1, "r", "radiologist")
    assert p.may("uploader") and p.may("radiologist") and not p.may("admin")
    with pytest.raises(InputError):
        users.check_role("chief")
    with pytest.raises(InputError):
        users.check_name("os:root")
