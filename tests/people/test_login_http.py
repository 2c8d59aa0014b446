"""Without a sign-in, Voila serves nothing: every HTTP and websocket path answers 401, 403 or a
redirect to /login, and no kernel starts. With the proxy provider, the user header counts only
from a trusted proxy address. Plain HTTP, no browser."""

from __future__ import annotations

import http.client
import json
import re
import uuid
from http.cookies import SimpleCookie
from urllib.parse import urlencode, urlsplit

import pytest
from dashboard_server import dashboard_env, serve
from people_factory import PASSWORD, user

from cxr.auth import audit

pytestmark = pytest.mark.e2e

KERNEL = str(uuid.uuid4())
PATHS = ["/", "/voila/render/dashboard.ipynb", "/dashboard.ipynb", "/api/kernels", f"/api/kernels/{KERNEL}",
         "/voila/static/voila.js", "/voila/templates/lab/static/voila.js", "/voila/api/themes/x.css",
         "/voila/labextensions/anywidget/package.json", "/voila/files/dashboard.ipynb", "/voila/files/x.png",
         f"/voila/api/shutdown/{KERNEL}", "/api/contents", "/api/sessions", "/api/terminals", "/tree", "/lab"]


def _request(base: str, method: str, path: str, headers: dict | None = None, body: str | None = None):
    u = urlsplit(base)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    conn.request(method, path, body=body, headers=headers or {})
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    return resp, data


def _refused(resp) -> bool:
    if resp.status in (401, 403):
        return True
    return resp.status in (301, 302) and urlsplit(resp.getheader("Location", "")).path.endswith("/login")


def _websocket(base: str, path: str, headers: dict | None = None):
    return _request(base, "GET", path, {"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
                                        "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==", **(headers or {})})


def _login(base: str, name: str, password: str):
    resp, body = _request(base, "GET", "/login")
    xsrf = re.search(rb'name="_xsrf" value="([^"]+)"', body).group(1).decode()
    cookie = SimpleCookie(resp.getheader("Set-Cookie"))
    jar = "; ".join(f"{k}={v.value}" for k, v in cookie.items())
    form = urlencode({"username": name, "password": password, "_xsrf": xsrf})
    return _request(base, "POST", "/login?next=%2F", {"Content-Type": "application/x-www-form-urlencoded",
                                                       "Cookie": jar}, form), jar


def test_no_sign_in_no_page_no_kernel(tmp_path, models_dir, db):
    user(db, "ana", "uploader")
    with serve(tmp_path, dashboard_env(tmp_path, models_dir)) as (base, log):
        login, body = _request(base, "GET", "/login")
        assert login.status == 200 and b'name="password"' in body and b"<script" not in body
        for path in PATHS:
            for method in ("GET", "HEAD"):
                resp, _ = _request(base, method, path)
                assert _refused(resp), (method, path, resp.status)
        for method, path in (("POST", "/api/kernels"), ("DELETE", f"/api/kernels/{KERNEL}")):
            resp, _ = _request(base, method, path, {"Content-Type": "application/json"}, "{}")
            assert resp.status in (401, 403), (method, path, resp.status)
        ws, _ = _websocket(base, f"/api/kernels/{KERNEL}/channels")
        assert ws.status in (401, 403), ws.status
        # a forged cookie is no sign-in
        forged = {"Cookie": "cxr-session=2|1:0|10:1700000000|11:cxr-session|8:Zm9vYmFy|" + "0" * 64}
        assert _refused(_request(base, "GET", "/", forged)[0])
        # signed in now: no kernel was started by any of the requests above
        (resp, _), jar = _login(base, "ana", PASSWORD)
        assert resp.status == 302, resp.status
        jar = jar + "; " + "; ".join(f"{k}={v.value}" for k, v in SimpleCookie(resp.getheader("Set-Cookie")).items())
        assert "Kernel started" not in log.read_text()
        page, body = _request(base, "GET", "/", {"Cookie": jar})  # the page runs the notebook in a new kernel
        assert page.status == 200 and b"bind_kernel" not in body  # the binding cell's source is not shown
        assert "Kernel started" in log.read_text()
        kernel = re.search(r"Kernel started: ([0-9a-f-]{36})", log.read_text()).group(1)
        info, data = _request(base, "GET", f"/api/kernels/{kernel}", {"Cookie": jar})
        assert info.status == 200 and json.loads(data)["id"] == kernel
        assert _request(base, "GET", f"/api/kernels/{kernel}")[0].status in (401, 403)  # not without the cookie


def test_wrong_password_is_refused_and_audited(tmp_path, models_dir, db):
    user(db, "ana", "uploader")
    with serve(tmp_path, dashboard_env(tmp_path, models_dir)) as (base, _):
        (resp, body), _jar = _login(base, "ana", "not the password")
        assert resp.status == 401 and b"Wrong user name or password" in body
        assert resp.getheader("Set-Cookie") is None or "cxr-session" not in resp.getheader("Set-Cookie")
    (event,) = audit.events(db, action="login")
    assert event["username"] == "ana" and event["outcome"] == "failure" and event["client_addr"] == "127.0.0.1"


def test_proxy_header_counts_only_from_a_trusted_proxy(tmp_path, models_dir, db):
    user(db, "sso-rita", "radiologist", password=None)
    header = {"X-Forwarded-User": "sso-rita"}
    untrusted = dashboard_env(tmp_path, models_dir, CXR_AUTH_PROVIDER="proxy", CXR_TRUSTED_PROXIES="10.9.9.9")
    with serve(tmp_path, untrusted) as (base, _):
        for path in ("/", "/api/kernels", "/voila/static/voila.js"):
            assert _refused(_request(base, "GET", path, header)[0]), path
    trusted = dashboard_env(tmp_path, models_dir, CXR_AUTH_PROVIDER="proxy", CXR_TRUSTED_PROXIES="127.0.0.1/32")
    with serve(tmp_path, trusted) as (base, _):
        static, _ = _request(base, "GET", "/voila/static/voila.js", header)
        assert static.status == 200
        assert _refused(_request(base, "GET", "/voila/static/voila.js")[0])  # no header: no user
        assert _refused(_request(base, "GET", "/voila/static/voila.js", {"X-Forwarded-User": "nobody"})[0])
        page, _ = _request(base, "GET", "/", header)
        assert page.status == 200
    (event,) = audit.events(db, action="login")
    assert event["username"] == "sso-rita" and '"proxy"' in event["detail"]
