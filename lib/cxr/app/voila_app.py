"""Voila for the dashboard, with every path behind cxr's sign-in (``python -m cxr.app.voila_app``).

Voila itself, configured through its own hooks (``cxr dashboard`` passes
``--Voila.identity_provider_class`` and ``--Voila.authorizer_class`` from :mod:`cxr.auth.jupyter`),
plus three things its command line cannot say:

- its handlers that are plain tornado static-file handlers (templates, static, themes,
  labextensions, ``/voila/files/``) refuse a request without a signed-in user (403), like
  jupyter_server's own handlers, which redirect to ``/login`` or answer 403; only ``/login`` and
  ``/logout`` answer without one;
- the pre-launch hook binds each page's kernel to the page's session (a first cell calling
  :func:`cxr.auth.sessions.bind_kernel`; Voila strips sources, so the page never shows it);
- the cookie-signing key comes from ``CXR_COOKIE_SECRET_FILE`` (default
  ``<data_dir>/secrets/cookie.key``, made on first use), so sessions survive a restart and several
  replicas behind one load balancer accept each other's cookies.
"""

from __future__ import annotations

import inspect
import os
import secrets
from pathlib import Path
from typing import Any

import nbformat
from jupyter_server.base.handlers import JupyterHandler
from tornado import web
from voila.app import Voila

from cxr.auth.jupyter import CxrUser, ProxyIdentityProvider
from cxr.config import Settings, get_settings


class SignedInOnly:
    """Mix-in for a tornado handler: 403 unless the identity provider knows the request's user."""

    async def prepare(self) -> None:
        provider = self.settings["identity_provider"]  # type: ignore[attr-defined]
        user = provider.get_user(self)
        if inspect.isawaitable(user):
            user = await user
        if user is None:
            raise web.HTTPError(403)
        result = super().prepare()  # type: ignore[misc]
        if inspect.isawaitable(result):
            await result


def _open_to_all(cls: type) -> bool:
    """A handler that answers without a sign-in: a plain tornado one, or a JupyterHandler whose GET
    is marked ``allow_unauthenticated`` (jupyter_server's static-file handlers)."""
    if not issubclass(cls, JupyterHandler):
        return True
    return bool(getattr(getattr(cls, "get", None), "__allow_unauthenticated", False))


def gated(spec: tuple, keep_open: tuple[type, ...] = ()) -> tuple:
    """The handler spec with its class behind :class:`SignedInOnly` when it would answer without a
    sign-in, except ``keep_open`` (the sign-in pages). JupyterHandlers otherwise check the sign-in
    themselves (``allow_unauthenticated_access`` is off)."""
    pattern, cls, *rest = spec
    if isinstance(cls, type) and issubclass(cls, web.RequestHandler) and cls not in keep_open and _open_to_all(cls):
        cls = type(f"SignedIn{cls.__name__}", (SignedInOnly, cls), {})
    return (pattern, cls, *rest)


def cookie_secret(settings: Settings) -> bytes:
    """The cookie-signing key: the configured file, else ``<data_dir>/secrets/cookie.key`` (made owner-only)."""
    path = Path(settings.cookie_secret_file or Path(settings.data_dir) / "secrets" / "cookie.key")
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(secrets.token_bytes(32))
    return path.read_bytes()


def prelaunch(handler: web.RequestHandler, notebook: nbformat.NotebookNode, cwd: str) -> nbformat.NotebookNode:
    """Bind the kernel Voila is about to start to the page's session (see the module docstring)."""
    user = handler.current_user
    if not isinstance(user, CxrUser):  # cannot happen behind the sign-in; refuse rather than run unbound
        raise web.HTTPError(403)
    hashed = user.session_hash
    provider = handler.settings["identity_provider"]
    if not hashed and isinstance(provider, ProxyIdentityProvider):
        hashed = provider.session_for(user)
    cell = nbformat.v4.new_code_cell(f"from cxr.auth.sessions import bind_kernel\nbind_kernel({hashed!r})")
    notebook.cells.insert(0, cell)
    return notebook


class CxrVoila(Voila):
    """Voila with the sign-in on every path (see the module docstring)."""

    def initialize(self, argv: Any = None) -> None:
        super().initialize(argv)
        self.voila_configuration.prelaunch_hook = prelaunch
        self.cookie_secret = cookie_secret(get_settings())

    def init_settings(self) -> dict[str, Any]:
        settings = super().init_settings()
        settings["allow_unauthenticated_access"] = False
        return settings

    def init_handlers(self) -> list:
        keep_open = tuple(cls for _, cls, *_ in self.identity_provider.get_handlers())
        return [gated(spec, keep_open) for spec in super().init_handlers()]


main = CxrVoila.launch_instance

if __name__ == "__main__":
    main()
