"""`cxr dashboard` in a subprocess for the sign-in tests: a port in 18870-18879, embedded stores in tmp."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

from cxr.devtools import services

PORTS = range(18870, 18880)
CHROMIUM = "/usr/bin/chromium"  # Debian's (scripts/system_deps.sh test)
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def free_port() -> int:
    for port in PORTS:
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port in 18870-18879")


def dashboard_env(tmp_path: Path, models_dir: Path, **extra: str) -> dict[str, str]:
    return {**os.environ, "CXR_DATA_DIR": str(tmp_path / "var"), "CXR_MODELS_DIR": str(models_dir),
            "JUPYTER_RUNTIME_DIR": str(tmp_path / "jr"), "JUPYTER_CONFIG_DIR": str(tmp_path / "jc"),
            "JUPYTER_DATA_DIR": str(tmp_path / "jd"), "IPYTHONDIR": str(tmp_path / "ipy"),
            "JUPYTER_PATH": str(Path(sys.prefix) / "share" / "jupyter"), **extra}


@contextmanager
def serve(tmp_path: Path, env: dict[str, str]):
    """Start `cxr dashboard`, wait for /login to answer; yields (base URL, log path)."""
    port = free_port()
    log_path = tmp_path / "voila.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "cxr", "dashboard", "--port", str(port), "--cull-idle", "120"],
                                env=env, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            deadline = time.time() + 90
            while time.time() < deadline:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    if proc.poll() is not None:
                        pytest.fail(f"cxr dashboard exited: {log_path.read_text()[-2000:]}")
                    time.sleep(0.3)
            else:
                pytest.fail("cxr dashboard did not open its port in 90 s")
            yield f"http://127.0.0.1:{port}/", log_path
        finally:
            services.terminate(proc.pid, timeout=20)
            proc.wait()


def browser_login(page, base_url: str, name: str, password: str) -> None:
    """Open the dashboard in Playwright: it sends the browser to /login; sign in and land on the page."""
    page.goto(base_url)
    page.wait_for_selector("#username")
    page.fill("#username", name)
    page.fill("#password", password)
    page.click("#login_submit")


@contextmanager
def chromium():
    """Debian's Chromium, headless, driven by Playwright; yields the browser."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield browser
        finally:
            browser.close()
