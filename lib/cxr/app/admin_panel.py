"""The dashboard's user management, for admins: list users, add one, disable or enable one.

The same functions as ``cxr users`` (:mod:`cxr.auth.users`), acting as the signed-in admin (the
session is checked again before each change, and each change is audited as that admin). A
password typed here travels over the page's websocket (serve the dashboard over TLS) and is kept
only as its argon2 hash.
"""

from __future__ import annotations

import html
from collections.abc import Callable

import ipywidgets as w
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from cxr.app import render
from cxr.auth import users
from cxr.auth.sessions import Session
from cxr.errors import CxrError
from cxr.stores.schema import ROLES


def users_html(rows: list[dict]) -> str:
    """The users table (no password hash ever leaves :func:`cxr.auth.users.list_users`)."""
    def line(r: dict) -> str:
        last = f"{r['last_login_at']:%Y-%m-%d %H:%M}" if r["last_login_at"] else "-"
        name = html.escape(r["username"])
        return (f"<tr data-user='{name}'><td>{name}</td><td>{r['role']}</td><td>{'yes' if r['enabled'] else 'no'}</td>"
                f"<td>{'password' if r['has_password'] else 'SSO'}</td><td>{last}</td></tr>")

    return (f'<div class="cxr-users" data-n="{len(rows)}"><table class="cxr-table"><thead><tr><th>user</th><th>role</th>'
            f"<th>enabled</th><th>sign-in</th><th>last sign-in (UTC)</th></tr></thead>"
            f"<tbody>{''.join(line(r) for r in rows)}</tbody></table></div>")


class AdminPanel:
    """Widgets of the user management; ``add()``, ``set_enabled()`` act as the signed-in admin."""

    def __init__(self, engine: Engine, session: Callable[[], Session | None]):
        self.engine, self.session = engine, session
        self.table = w.HTML("")
        self.name = w.Text(description="User", placeholder="name", style={"description_width": "60px"})
        self.role = w.Dropdown(options=list(ROLES), value="uploader", description="Role",
                               style={"description_width": "40px"}, layout=w.Layout(width="180px"))
        self.password = w.Password(description="Password", placeholder="10+ characters, or empty for SSO only",
                                   style={"description_width": "70px"})
        self.add_button = w.Button(description="Add user", icon="user-plus")
        self.disable_button = w.Button(description="Disable", icon="ban")
        self.enable_button = w.Button(description="Enable", icon="check")
        self.status = w.HTML("")
        self.add_button.on_click(lambda _b: self.add())
        self.disable_button.on_click(lambda _b: self.set_enabled(False))
        self.enable_button.on_click(lambda _b: self.set_enabled(True))
        self.widget = w.VBox([w.HTML("<h3>Users (admins)</h3>"), self.table,
                              w.HBox([self.name, self.role, self.password]),
                              w.HBox([self.add_button, self.disable_button, self.enable_button]), self.status])
        self.widget.add_class("cxr-admin")
        self.refresh()

    def _admin(self) -> Session | None:
        s = self.session()
        if s is None or not s.principal.may("admin"):
            self.status.value = render.error_html("only a signed-in admin manages users", title="Refused",
                                                  nothing_stored=True)
            return None
        return s

    def _run(self, action: Callable[[Session], str]) -> bool:
        s = self._admin()
        if s is None:
            return False
        try:
            done = action(s)
        except (CxrError, SQLAlchemyError) as exc:
            why = str(exc) if isinstance(exc, CxrError) else type(exc).__name__
            self.status.value = render.error_html(why, title="Not changed", nothing_stored=False)
            return False
        self.status.value = f'<div class="cxr-admin-done">{html.escape(done)}</div>'
        self.refresh()
        return True

    def add(self) -> bool:
        """Add the user in the form (no password: SSO only); the password field is cleared either way."""
        name, role, password = self.name.value.strip(), self.role.value, self.password.value or None
        self.password.value = ""
        return self._run(lambda s: f"added {users.add_user(self.engine, name, role, password, actor=s.actor()).username}")

    def set_enabled(self, enabled: bool) -> bool:
        name = self.name.value.strip()

        def act(s: Session) -> str:
            if not enabled and name == s.principal.username:
                raise CxrError("an admin does not disable their own account here (use `cxr users disable`)")
            users.set_enabled(self.engine, name, enabled, actor=s.actor())
            return f"{'enabled' if enabled else 'disabled'} {name}"

        return self._run(act)

    def refresh(self) -> None:
        try:
            self.table.value = users_html(users.list_users(self.engine))
        except SQLAlchemyError as exc:
            self.table.value = f"<i>Users unavailable ({type(exc).__name__}).</i>"
