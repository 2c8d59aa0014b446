"""Footprint of the dashboard image's contents and cold start to the first prediction.

    .venv/bin/python benchmarks/bench_footprint.py [--keep DIR] [--skip-cold-start]

1. Builds the dashboard image's file set without Docker (no engine on the build machines): a
   fresh virtualenv with ``pip install '.[app]'`` (what the Dockerfile installs, no torch), the
   ``cxr`` kernel registered, plus the files the Dockerfile copies (lib/, notebooks/, models/).
   Reports its size against the seed's 7 GB container (goal: at most 1/5) and, in the same run,
   the full development environment (.venv, every extra) for contrast. The base image's own
   Python/Debian layer cannot be measured here; the size of this machine's Python installation
   is reported as a proxy for the interpreter part.
2. Cold start: launches ``cxr dashboard`` from that environment on a free port with empty
   embedded stores, opens the page in Chromium (Playwright), uploads a phantom PNG and waits
   for the findings. Times: launch -> port open, -> page rendered (kernel up, model loaded),
   -> first prediction shown.

Writes benchmarks/out/footprint.json and prints the lines for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

from cxr.devtools import services

REPO = Path(__file__).resolve().parents[1]
SEED_CONTAINER_BYTES = 7 * 10**9  # the seed's container: "7 GB"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def du(path: Path) -> int:
    """Bytes used by the files under ``path`` (apparent sizes, links not followed)."""
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            p = Path(root) / name
            if not p.is_symlink():
                total += p.stat().st_size
    return total


def top_packages(site: Path, n: int = 8) -> list[tuple[str, int]]:
    sizes = [(p.name, du(p) if p.is_dir() else p.stat().st_size) for p in site.iterdir()
             if not p.name.endswith((".dist-info", ".pth")) and p.name != "__pycache__"]
    return sorted(sizes, key=lambda x: -x[1])[:n]


def build_app_env(target: Path) -> dict:
    t0 = time.perf_counter()
    reuse = (target / "bin" / "cxr").exists()
    if not reuse:
        _install(target)
    build_s = None if reuse else time.perf_counter() - t0
    return _measure(target, build_s)


def _stdlib_bytes() -> int:
    """This machine's Python standard library (no site-packages): a proxy for the base image's interpreter."""
    lib = Path(sysconfig.get_paths(vars={"base": sys.base_prefix, "platbase": sys.base_prefix})["stdlib"])
    return sum(du(p) if p.is_dir() else p.stat().st_size for p in lib.iterdir()
               if p.name not in ("site-packages", "dist-packages") and not p.is_symlink())


def _install(target: Path) -> None:
    base_python = Path(sys.base_prefix) / "bin" / f"python{sys.version_info.major}.{sys.version_info.minor}"
    subprocess.run([str(base_python), "-m", "venv", str(target)], check=True)
    pip = [str(target / "bin" / "python"), "-m", "pip", "install", "-q", "--no-cache-dir", "--no-compile"]
    subprocess.run(pip + ["-U", "pip"], check=True)
    subprocess.run(pip + [f"{REPO}[app]"], check=True)
    subprocess.run([str(target / "bin" / "python"), "-m", "ipykernel", "install", "--sys-prefix", "--name", "cxr",
                    "--display-name", "cxr (Python 3)"], check=True, capture_output=True)


def _measure(target: Path, build_s: float | None) -> dict:
    site = Path(subprocess.check_output([str(target / "bin" / "python"), "-c",
                                         "import sysconfig; print(sysconfig.get_paths()['purelib'])"], text=True).strip())
    torch = subprocess.run([str(target / "bin" / "python"), "-c", "import torch"], capture_output=True).returncode == 0
    copies = {name: du(REPO / name) for name in ("lib", "notebooks", "models")}
    venv_bytes = du(target)
    python_layer = _stdlib_bytes()
    return {"build_s": round(build_s, 1) if build_s is not None else None, "venv_bytes": venv_bytes, "copies_bytes": copies,
            "image_contents_bytes": venv_bytes + sum(copies.values()),
            "python_stdlib_proxy_bytes": python_layer, "torch_importable": torch,
            "top_packages": top_packages(site)}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cold_start(app_env: Path, work: Path) -> dict:
    """launch -> port, -> page rendered, -> first prediction (seconds), in Chromium."""
    from playwright.sync_api import sync_playwright

    from cxr.model.phantoms import generate_phantom, write_png

    data = work / "var"
    png = work / "phantom.png"
    write_png(generate_phantom(7, size=512), png)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CXR_")}
    env.update({"CXR_DATA_DIR": str(data), "CXR_MODELS_DIR": str(REPO / "models"),
                "JUPYTER_PATH": str(app_env / "share" / "jupyter"), "JUPYTER_RUNTIME_DIR": str(work / "jr"),
                "JUPYTER_CONFIG_DIR": str(work / "jc"), "JUPYTER_DATA_DIR": str(work / "jd"),
                "IPYTHONDIR": str(work / "ipy"), "CXR_ENV_FILE": str(work / "no.env")})
    cxr = str(app_env / "bin" / "cxr")
    subprocess.run([cxr, "db", "upgrade"], env=env, check=True, capture_output=True, cwd=work)
    port = _free_port()
    log = open(work / "voila.log", "w")
    t0 = time.perf_counter()
    proc = subprocess.Popen([cxr, "dashboard", "--port", str(port), "--notebook", str(REPO / "notebooks" / "dashboard.ipynb")],
                            env=env, cwd=work, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None or time.perf_counter() - t0 > 120:
                    raise RuntimeError(f"dashboard did not start: {(work / 'voila.log').read_text()[-2000:]}") from None
                time.sleep(0.1)
        t_port = time.perf_counter() - t0
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page()
            page.set_default_timeout(180_000)
            page.goto(f"http://127.0.0.1:{port}/")
            page.wait_for_selector(".widget-upload")
            t_page = time.perf_counter() - t0
            with page.expect_file_chooser() as chooser:
                page.click(".widget-upload")
            chooser.value.set_files(str(png))
            page.wait_for_selector(".cxr-findings[data-n]")
            t_pred = time.perf_counter() - t0
            browser.close()
        health = subprocess.run([str(app_env / "bin" / "python"), "-c",
                                 f"import urllib.request; urllib.request.urlopen('http://127.0.0.1:{port}/voila/static/voila.js', timeout=4)"],
                                capture_output=True).returncode == 0
    finally:
        services.terminate(proc.pid, timeout=20)
        proc.wait()
        log.close()
    return {"port_open_s": round(t_port, 1), "page_rendered_s": round(t_page, 1),
            "first_prediction_s": round(t_pred, 1), "healthcheck_url_ok": health}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--keep", type=Path, help="Build the app environment here and keep it, or reuse the one "
                    "already there (default: a fresh temp dir).")
    ap.add_argument("--skip-cold-start", action="store_true")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="cxr-footprint-"))
    app_env = args.keep or work / "app-env"
    try:
        result = {"machine": f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}", "seed_container_bytes": SEED_CONTAINER_BYTES}
        result["app"] = build_app_env(app_env)
        dev = REPO / ".venv"
        result["dev_venv_bytes"] = du(dev) if dev.is_dir() else None
        if not args.skip_cold_start:
            result["cold_start"] = cold_start(app_env, work)
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    out = REPO / "benchmarks" / "out"
    out.mkdir(parents=True, exist_ok=True)
    (out / "footprint.json").write_text(json.dumps(result, indent=2))
    app = result["app"]
    mb = 1e6
    ratio = app["image_contents_bytes"] / SEED_CONTAINER_BYTES
    print(json.dumps(result, indent=2))
    print(f"\n| app env (.[app] venv) | {app['venv_bytes'] / mb:.0f} MB |")
    print(f"| + lib, notebooks, models | {sum(app['copies_bytes'].values()) / mb:.1f} MB |")
    print(f"| image contents (no base layer) | {app['image_contents_bytes'] / mb:.0f} MB = 1/{1 / ratio:.1f} of 7 GB |")
    print(f"| dev .venv (all extras, same run) | {(result['dev_venv_bytes'] or 0) / mb:.0f} MB |")
    if "cold_start" in result:
        cs = result["cold_start"]
        print(f"| cold start | port {cs['port_open_s']} s, page {cs['page_rendered_s']} s, first prediction {cs['first_prediction_s']} s |")


if __name__ == "__main__":
    main()
