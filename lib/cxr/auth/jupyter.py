"""The dashboard's sign-in, on jupyter_server's identity and authorizer hooks (which Voila exposes).

- :class:`PasswordIdentityProvider` (``CXR_AUTH_PROVIDER=password``, the default): users and
  argon2 hashes in the DB, a login form, sessions that expire, lock-out after repeated failures.
  The cookie (signed by tornado, HTTP-only, SameSite=Lax, ``Secure`` over HTTPS, also when a
  trusted proxy says ``X-Forwarded-Proto: https``) holds a random token; the DB
  holds its sha256 and checks the session on every request.
- :class:`ProxyIdentityProvider` (``CXR_AUTH_PROVIDER=proxy``): a reverse proxy (OAuth2 proxy, a
  hospital SSO) signs people in and names them in a header (``CXR_PROXY_USER_HEADER``). The
  header is believed only on connections from ``CXR_TRUSTED_PROXIES``; the user must exist in cxr
  (``cxr users add NAME --role ... --no-password``), which gives the role.
- :class:`RoleAuthorizer`: only a signed-in cxr user with a role reaches a kernel; nothing else
  of jupyter_server's API is allowed.

No web server is written here: these are the classes ``--Voila.identity_provider_class`` and
``--Voila.authorizer_class`` name; :mod:`cxr.app.voila_app` adds the pre-launch hook and puts
Voila's static handlers behind the same sign-in.
"""

from __future__ import annotations

import html
import ipaddress
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from jupyter_server.auth.authorizer import Authorizer
from jupyter_server.auth.decorator import allow_unauthenticated
from jupyter_server.auth.identity import IdentityProvider, User
from jupyter_server.base.handlers import JupyterHandler
from sqlalchemy import Engine
from tornado import web

from cxr.auth import audit, sessions, users
from cxr.config import Settings, get_settings
from cxr.stores.db import engine_from_settings

COOKIE = "cxr-session"


@dataclass
class CxrUser(User):
    """jupyter_server's user plus what cxr needs: the role and the session the kernel binds to."""

    role: str = ""
    user_id: int = 0
    session_hash: str = ""
    client_addr: str = ""


def _networks(spec: str) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    return [ipaddress.ip_network(p.strip(), strict=False) for p in spec.split(",") if p.strip()]


def _in(addr: str, networks: list) -> bool:
    try:
        ip = ipaddress.ip_address(addr)
    except ValueError:
        return False
    return any(ip in n for n in networks)


def from_trusted_proxy(handler: web.RequestHandler, settings: Settings) -> bool:
    return _in(handler.request.remote_ip or "", _networks(settings.trusted_proxies))


def client_address(handler: web.RequestHandler, settings: Settings) -> str:
    """The peer's address; behind a trusted proxy, the last address in X-Forwarded-For it did not add."""
    peer = handler.request.remote_ip or ""
    trusted = _networks(settings.trusted_proxies)
    if not _in(peer, trusted):
        return peer
    hops = [h.strip() for h in handler.request.headers.get("X-Forwarded-For", "").split(",") if h.strip()]
    for hop in reversed(hops):
        if not _in(hop, trusted):
            return hop[:64]
    return peer


class _CxrProvider(IdentityProvider):
    """What both providers share: the settings and one engine per server process."""

    @cached_property
    def cxr_settings(self) -> Settings:
        return get_settings()

    @cached_property
    def engine(self) -> Engine:
        return engine_from_settings(self.cxr_settings)

    @property
    def auth_enabled(self) -> bool:
        return True

    def validate_security(self, app: Any, ssl_options: dict[str, Any] | None = None) -> None:
        if not app.ip or app.ip == "0.0.0.0":
            app.log.warning("cxr dashboard: listening on all addresses; put it behind TLS (see docs/deploy-aws.md)")

    def _user(self, s: sessions.Session) -> CxrUser:
        p = s.principal
        return CxrUser(username=p.username, role=p.role, user_id=p.user_id, session_hash=s.token_hash,
                       client_addr=s.client_addr or "")


# -- passwords in the DB ---------------------------------------------------------------------------
_FORM = """<!doctype html><html><head><meta charset="utf-8"><title>cxr: sign in</title>
<style>body{{font-family:sans-serif;background:#f4f5f7;margin:0}}main{{max-width:340px;margin:12vh auto;
background:#fff;padding:24px 28px;border-radius:6px;box-shadow:0 1px 4px #0002}}label{{display:block;margin:12px 0 4px}}
input[type=text],input[type=password]{{width:100%;padding:6px;box-sizing:border-box}}button{{margin-top:16px;padding:6px 18px}}
.cxr-login-error{{color:#9b1c1c;background:#fde8e8;padding:6px 8px;border-radius:4px}}
.note{{font-size:85%;color:#555;margin-top:14px}}</style></head><body><main>
<h2 style="margin-top:0">Chest X-ray findings</h2>{message}
<form method="post" action="{action}">{xsrf}
<label for="username">User name</label><input type="text" id="username" name="username" autocomplete="username" autofocus>
<label for="password">Password</label><input type="password" id="password" name="password" autocomplete="current-password">
<button type="submit" id="login_submit">Sign in</button></form>
<p class="note">Demo model trained on synthetic phantom images only: not for clinical use.</p></main></body></html>"""


class LoginHandler(JupyterHandler):
    """A self-contained form (no static files, which stay behind the sign-in)."""

    def _render(self, message: str = "", status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Cache-Control", "no-store")
        nxt = self.get_argument("next", default=self.base_url)
        action = f"{self.base_url}login?next={web.escape.url_escape(nxt)}"
        box = f'<p class="cxr-login-error">{html.escape(message)}</p>' if message else ""
        self.finish(_FORM.format(message=box, action=html.escape(action), xsrf=self.xsrf_form_html()))

    def _next(self) -> str:
        nxt = self.get_argument("next", default=self.base_url)
        return nxt if nxt.startswith("/") and not nxt.startswith("//") and "\\" not in nxt else self.base_url

    @allow_unauthenticated
    def get(self) -> None:
        if self.current_user:
            self.redirect(self._next())
            return
        self._render()

    @allow_unauthenticated
    def post(self) -> None:
        user = self.identity_provider.process_login_form(self)
        if user is None:
            self._render("Wrong user name or password, or the account is locked.", status=401)
            return
        self.identity_provider.set_login_cookie(self, user)
        self.redirect(self._next())


class LogoutHandler(JupyterHandler):
    @allow_unauthenticated
    def get(self) -> None:
        self.identity_provider.clear_login_cookie(self)
        self.set_header("Cache-Control", "no-store")
        self.finish("<!doctype html><p>Signed out. <a href='login'>Sign in again</a></p>")


class PasswordIdentityProvider(_CxrProvider):
    """Users and argon2 hashes in the DB; sessions that expire; lock-out (see the module docstring)."""

    @property
    def login_available(self) -> bool:
        return True

    def get_handlers(self) -> list[tuple[str, object]]:
        # cxr's own form, whatever login_handler_class Voila passes (its template needs static files)
        return [(r"/login", LoginHandler), (r"/logout", LogoutHandler)]

    def get_user(self, handler: web.RequestHandler) -> CxrUser | None:  # type: ignore[override]
        cached = getattr(handler, "_cxr_user", None)
        if cached is not None:
            return cached
        raw = handler.get_secure_cookie(COOKIE, max_age_days=max(1, self.cxr_settings.session_minutes // 1440 + 1))
        if not raw:
            return None
        s = sessions.session_of(self.engine, sessions.token_hash(raw.decode()))
        if s is None:
            return None
        user = self._user(s)
        handler._cxr_user = user  # type: ignore[attr-defined]
        return user

    def process_login_form(self, handler: web.RequestHandler) -> CxrUser | None:  # type: ignore[override]
        name = handler.get_argument("username", default="").strip()
        password = handler.get_argument("password", default="")
        client = client_address(handler, self.cxr_settings)
        result = users.authenticate(self.engine, name, password, self.cxr_settings, client_addr=client)
        if result.principal is None:
            self.log.info("cxr: sign-in refused (%s)", result.reason)
            return None
        token = sessions.open_session(self.engine, result.principal, kind="password",
                                      minutes=self.cxr_settings.session_minutes, client_addr=client)
        user = CxrUser(username=result.principal.username, role=result.principal.role,
                       user_id=result.principal.user_id, session_hash=sessions.token_hash(token), client_addr=client)
        user._token = token  # type: ignore[attr-defined]  # only until the cookie is set
        return user

    def set_login_cookie(self, handler: web.RequestHandler, user: User) -> None:
        token = getattr(user, "_token", None)
        if token is None:
            return
        https = handler.request.protocol == "https" or (  # TLS ended at a trusted proxy (load balancer)
            from_trusted_proxy(handler, self.cxr_settings)
            and handler.request.headers.get("X-Forwarded-Proto", "").lower() == "https")
        secure = self.secure_cookie if self.secure_cookie is not None else https
        handler.set_secure_cookie(COOKIE, token, expires_days=None, httponly=True, secure=secure, samesite="Lax",
                                  path=getattr(handler, "base_url", "/"))

    def clear_login_cookie(self, handler: web.RequestHandler) -> None:
        raw = handler.get_secure_cookie(COOKIE)
        if raw:
            sessions.end_session(self.engine, sessions.token_hash(raw.decode()),
                                 client_addr=client_address(handler, self.cxr_settings))
        handler.clear_cookie(COOKIE, path=getattr(handler, "base_url", "/"))


# -- a trusted reverse proxy (SSO) -----------------------------------------------------------------
class ProxyLoginHandler(JupyterHandler):
    """Where an unauthenticated request is sent in proxy mode: the proxy should have signed it in."""

    @allow_unauthenticated
    def get(self) -> None:
        self.set_status(401)
        self.finish("<!doctype html><p>Not signed in: this dashboard signs people in through the hospital's "
                    "single sign-on. Open it through that address, or ask an administrator for access.</p>")


class ProxyIdentityProvider(_CxrProvider):
    """Trust ``CXR_PROXY_USER_HEADER`` from ``CXR_TRUSTED_PROXIES`` only; the user must exist in cxr."""

    @property
    def logout_available(self) -> bool:
        return False

    def get_handlers(self) -> list[tuple[str, object]]:
        return [(r"/login", ProxyLoginHandler)]

    def get_user(self, handler: web.RequestHandler) -> CxrUser | None:  # type: ignore[override]
        cached = getattr(handler, "_cxr_user", None)
        if cached is not None:
            return cached
        s = self.cxr_settings
        name = handler.request.headers.get(s.proxy_user_header, "").strip()
        if not name or not from_trusted_proxy(handler, s):
            return None
        row = users.get_user(self.engine, name)
        if row is None or not row["enabled"]:
            return None
        p = users.principal_of(row)
        user = CxrUser(username=p.username, role=p.role, user_id=p.user_id, client_addr=client_address(handler, s))
        handler._cxr_user = user  # type: ignore[attr-defined]
        return user

    def session_for(self, user: CxrUser) -> str:
        """A DB session for a page's kernel (the proxy has no cookie of cxr's); audited as a sign-in."""
        p = users.Principal(user.user_id, user.username, user.role)  # type: ignore[arg-type]
        token = sessions.open_session(self.engine, p, kind="proxy", minutes=self.cxr_settings.session_minutes,
                                      client_addr=user.client_addr)
        audit.record(self.engine, p.actor(user.client_addr), "login", object_type="user", object_ids=[p.user_id],
                     detail={"provider": "proxy"})
        return sessions.token_hash(token)


class RoleAuthorizer(Authorizer):
    """Kernels for signed-in cxr users with a role; every other jupyter_server API refused."""

    def is_authorized(self, handler: JupyterHandler, user: User, action: str, resource: str) -> bool:
        return isinstance(user, CxrUser) and user.role in users.ROLES and resource == "kernels"
