"""``cxr dashboard``: serve notebooks/dashboard.ipynb with Voila."""

from __future__ import annotations

from pathlib import Path

import typer

from cxr.config import Settings

REPO = Path(__file__).resolve().parents[3]
NOTEBOOK = REPO / "notebooks" / "dashboard.ipynb"
MIN_WS_MESSAGE = 64 * 1024 * 1024
PROVIDERS = {"password": "cxr.auth.jupyter.PasswordIdentityProvider", "proxy": "cxr.auth.jupyter.ProxyIdentityProvider"}


def voila_command(notebook: Path, *, host: str, port: int, max_upload_bytes: int, cull_idle_s: int = 900,
                  cull_interval_s: int = 60, auth_provider: str = "password") -> list[str]:
    """The Voila command line: loopback by default, sign-in on every path (cxr's identity provider and
    authorizer; :mod:`cxr.app.voila_app`), kernel culling, a websocket limit fit for DICOM."""
    import sys

    # Uploads travel over the kernel websocket as one binary message; leave room for framing.
    ws_limit = max(MIN_WS_MESSAGE, 2 * max_upload_bytes + 1024 * 1024)
    return [
        sys.executable, "-m", "cxr.app.voila_app", str(notebook),
        f"--port={port}", "--no-browser", f"--Voila.ip={host}",
        f"--Voila.identity_provider_class={PROVIDERS[auth_provider]}",
        "--Voila.authorizer_class=cxr.auth.jupyter.RoleAuthorizer",
        f"--Voila.tornado_settings={{'websocket_max_message_size': {ws_limit}}}",
        f"--MappingKernelManager.cull_idle_timeout={cull_idle_s}",
        f"--MappingKernelManager.cull_interval={cull_interval_s}",
        "--MappingKernelManager.cull_connected=False",
        "--VoilaConfiguration.show_tracebacks=False",
    ]


def voila_env(settings: Settings) -> dict[str, str]:
    """The environment for Voila and its kernels: absolute paths, since kernels run in notebooks/."""
    import os

    env = dict(os.environ)
    env["CXR_DATA_DIR"] = str(Path(settings.data_dir).resolve())
    env["CXR_MODELS_DIR"] = str(Path(settings.models_dir).resolve())
    env_file = Path(os.environ.get("CXR_ENV_FILE", ".env"))
    if env_file.is_file():
        env["CXR_ENV_FILE"] = str(env_file.resolve())
    jupyter = Path(settings.data_dir).resolve() / "jupyter"
    env.setdefault("JUPYTER_RUNTIME_DIR", str(jupyter / "runtime"))
    env.setdefault("JUPYTER_CONFIG_DIR", str(jupyter / "config"))
    env.setdefault("IPYTHONDIR", str(jupyter / "ipython"))
    return env


def register(root: typer.Typer) -> None:
    @root.command("dashboard")
    def dashboard(
        host: str = typer.Option(None, "--host", help="Address to bind (default: CXR_DASHBOARD_HOST, 127.0.0.1).",
                                 show_default=False),
        port: int = typer.Option(None, "--port", help="Port (default: CXR_DASHBOARD_PORT, 8866).", show_default=False),
        cull_idle: int = typer.Option(900, "--cull-idle", help="Seconds after which an idle kernel (closed tab) is shut down."),
        notebook: Path = typer.Option(NOTEBOOK, "--notebook", help="Dashboard notebook to serve."),
    ) -> None:
        """Serve the upload-and-detect dashboard (Voila) on 127.0.0.1:8866, behind a sign-in.

        People sign in with a cxr user (`cxr users add`), or through a trusted SSO proxy
        (CXR_AUTH_PROVIDER=proxy). Each browser tab gets a kernel that loads the model once;
        idle kernels are culled.
        The demo model is trained on synthetic images: not for clinical use.
        """
        import subprocess

        from cxr.config import get_settings
        from cxr.errors import ConfigError

        settings = get_settings()
        if not notebook.is_file():
            raise ConfigError(f"dashboard notebook not found: {notebook}")
        host = host or settings.dashboard_host
        port = port or settings.dashboard_port
        cmd = voila_command(notebook, host=host, port=port, max_upload_bytes=settings.max_upload_bytes,
                            cull_idle_s=cull_idle, auth_provider=settings.auth_provider)
        typer.echo(f"cxr dashboard: http://{host}:{port}/ (Ctrl-C stops it)", err=True)
        try:
            rc = subprocess.call(cmd, env=voila_env(settings))
        except KeyboardInterrupt:
            rc = 0
        raise typer.Exit(rc)
