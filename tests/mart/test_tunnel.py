"""The mart through the SSH tunnel (local sshd + SecantusDB) and the on-premises script."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from cxr.errors import ConfigError
from cxr.mart.export import export_mart, load_instances
from mart_docs import CLASSES, make_doc, populate

REPO = Path(__file__).resolve().parents[2]


def _ssh_env(services, ssh_target, warehouse_db, lake) -> dict[str, str]:
    from cxr.config import load_settings
    from cxr.stores.db import make_engine, upgrade

    upgrade(make_engine(load_settings().resolved_db_url))  # exports are audited in the metadata DB (issue 14)
    return {
        "CXR_WAREHOUSE_URL": services["CXR_WAREHOUSE_URL"], "CXR_WAREHOUSE_DB": warehouse_db.name,
        "CXR_LAKE_URL": lake.url, "CXR_SSH_HOST": ssh_target.host, "CXR_SSH_PORT": str(ssh_target.port),
        "CXR_SSH_USER": ssh_target.user, "CXR_SSH_KEY_FILE": str(ssh_target.key_file),
        "CXR_SSH_KNOWN_HOSTS": str(ssh_target.known_hosts),
    }


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.integration
def test_export_goes_through_the_tunnel_with_direct_connection(services, ssh_target, warehouse_db, local_lake,
                                                               make_settings, tmp_path, monkeypatch):
    import cxr.stores.remote
    import cxr.stores.warehouse

    docs = [make_doc(i) for i in range(1, 6)]
    populate(warehouse_db, local_lake, docs)
    env = _ssh_env(services, ssh_target, warehouse_db, local_lake)
    s = make_settings(**{k.removeprefix("CXR_").lower(): v for k, v in env.items()})
    tunnels, urls = [], []
    real_tunnel, real_connect = cxr.stores.remote.open_tunnel, cxr.stores.warehouse.connect

    def spy_tunnel(target, host, port, **kw):
        tunnels.append((target, host, port))
        return real_tunnel(target, host, port, **kw)

    def spy_connect(url, **kw):
        urls.append(url)
        return real_connect(url, **kw)

    monkeypatch.setattr(cxr.stores.remote, "open_tunnel", spy_tunnel)
    monkeypatch.setattr(cxr.stores.warehouse, "connect", spy_connect)
    res = export_mart(tmp_path / "out", settings=s, lake=local_lake, classes=CLASSES, progress=False)
    assert res.images == 5 and res.watermark == max(t["transaction_id"] for d in docs for t in d["transactions"])
    wh = urlsplit(services["CXR_WAREHOUSE_URL"])
    assert [(t.host, t.port, h, p) for t, h, p in tunnels] == [(ssh_target.host, ssh_target.port, wh.hostname, wh.port)]
    port = int(re.match(r"mongodb://127\.0\.0\.1:(\d+)/", urls[0]).group(1))
    assert port != wh.port and "directConnection=true" in urls[0] and len(urls) == 1
    assert not _listening(port)  # closed again
    assert f"through the SSH tunnel via {ssh_target.user}@{ssh_target.host}:{ssh_target.port}" in (tmp_path / "out" / "README.md").read_text()


@pytest.mark.integration
def test_unknown_host_key_is_refused(services, ssh_target, warehouse_db, local_lake, make_settings, tmp_path):
    env = _ssh_env(services, ssh_target, warehouse_db, local_lake)
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    env["CXR_SSH_KNOWN_HOSTS"] = str(empty)
    s = make_settings(**{k.removeprefix("CXR_").lower(): v for k, v in env.items()})
    with pytest.raises(ConfigError, match="CXR_SSH_KNOWN_HOSTS"):
        export_mart(tmp_path / "out", settings=s, lake=local_lake, progress=False)
    assert not (tmp_path / "out").exists()


def _script(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    full = {**os.environ, **env, "CXR_PYTHON": sys.executable}
    return subprocess.run(["bash", str(REPO / "scripts" / "batch_load_mart.sh"), *args], env=full,
                          capture_output=True, text=True, timeout=300, cwd=REPO)


@pytest.mark.e2e
def test_batch_load_script_runs_the_notebook_through_the_tunnel_and_closes_it(services, ssh_target, warehouse_db,
                                                                               local_lake, tmp_path):
    docs = [make_doc(i, boxes_per_tx=2) for i in range(1, 9)]
    populate(warehouse_db, local_lake, docs)
    env = _ssh_env(services, ssh_target, warehouse_db, local_lake)
    out = tmp_path / "mart"
    ok = _script(env, str(out), "-p", "min_score", "0.4", "-p", "samples", "2")
    assert ok.returncode == 0, ok.stderr[-3000:]
    port = int(re.search(r"tunnel up: 127\.0\.0\.1:(\d+)", ok.stderr).group(1))
    assert "tunnel closed" in ok.stderr and not _listening(port)
    coco = load_instances(out)
    assert len(coco["images"]) == 8 and all(a["score"] >= 0.4 for a in coco["annotations"])
    records = [o.key for o in local_lake.list("runs/batch_load_mart/")]
    assert any(k.endswith("mart_export.ipynb") for k in records), records
    import nbformat

    nb = nbformat.reads(local_lake.get(next(k for k in records if k.endswith(".ipynb"))).decode(), as_version=4)
    images = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert len(images) == 2  # class distribution + sample images with boxes

    # a failing export still closes the tunnel and writes no COCO file
    bad = _script(env, str(tmp_path / "bad"), "-p", "min_score", "2")
    assert bad.returncode != 0
    port = int(re.search(r"tunnel up: 127\.0\.0\.1:(\d+)", bad.stderr).group(1))
    assert "tunnel closed" in bad.stderr and not _listening(port)
    assert not (tmp_path / "bad" / "annotations").exists()


@pytest.mark.e2e
def test_batch_load_script_closes_the_tunnel_when_stopped(services, ssh_target, warehouse_db, local_lake, tmp_path):
    import signal

    populate(warehouse_db, local_lake, [make_doc(1)])
    env = {**os.environ, **_ssh_env(services, ssh_target, warehouse_db, local_lake), "CXR_PYTHON": sys.executable}
    proc = subprocess.Popen(["bash", str(REPO / "scripts" / "batch_load_mart.sh"), str(tmp_path / "mart")], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=REPO)
    try:
        port = None
        for line in proc.stderr:
            m = re.search(r"tunnel up: 127\.0\.0\.1:(\d+)", line)
            if m:
                port = int(m.group(1))
                break
        assert port is not None and _listening(port)
        proc.send_signal(signal.SIGTERM)
        rest = proc.stderr.read()
        assert proc.wait(timeout=60) == 143
    finally:
        if proc.poll() is None:
            proc.kill()
    assert "tunnel closed" in rest and not _listening(port)
