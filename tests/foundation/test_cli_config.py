"""The `cxr` command: help, services status, and the bad-configuration rule (one line, exit 2)."""

from __future__ import annotations

import pytest
from foundation_helpers import assert_one_config_line, free_port


@pytest.mark.unit
def test_help_lists_every_command(run_cxr):
    from cxr.cli import app

    out = run_cxr("--help")
    assert out.returncode == 0, out.stderr
    names = [c.name or c.callback.__name__ for c in app.registered_commands] + [g.name for g in app.registered_groups]
    assert {"config", "db", "lake", "services"} <= set(names)
    for name in names:
        assert f" {name} " in out.stdout or f" {name}\n" in out.stdout, name
    sub = run_cxr("services", "--help")
    for name in ("up", "down", "status", "check"):
        assert f" {name} " in sub.stdout
    assert "Traceback" not in out.stderr + sub.stderr


@pytest.mark.integration
def test_services_status_lists_each_up(services, services_data_dir, run_cxr):
    out = run_cxr("services", "status", env={"CXR_DATA_DIR": str(services_data_dir)})
    assert out.returncode == 0, out.stderr
    rows = {line.split()[0]: line.split()[1] for line in out.stdout.splitlines() if not line.startswith("env:")}
    assert rows == {"mariadb": "up", "s3": "up", "warehouse": "up", "sshd": "up"}


@pytest.mark.integration
def test_services_up_is_idempotent(services, services_data_dir):
    from cxr.devtools import services as svc

    before = {s.name: s.pid for s in svc.status(services_data_dir)}
    assert svc.up(services_data_dir) == services
    assert {s.name: s.pid for s in svc.status(services_data_dir)} == before


@pytest.mark.integration
def test_services_port_in_use_is_reported(tmp_path):
    import socket

    from cxr.devtools import services as svc
    from cxr.errors import ConfigError

    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        port = blocker.getsockname()[1]
        with pytest.raises(ConfigError) as err:
            svc.Warehouse(tmp_path / "services", port).start()
    assert err.value.setting == "CXR_SERVICES_PORTS" and str(port) in str(err.value)
    with pytest.raises(ConfigError):
        svc.parse_ports("mariadb=abc")
    assert svc.parse_ports("s3=6000")["s3"] == 6000


@pytest.mark.integration
def test_services_check_on_local_servers(services, run_cxr):
    env = {k: v for k, v in services.items() if k.startswith("CXR_")}
    out = run_cxr("services", "check", env=env)
    assert out.returncode == 0, out.stderr
    for store in ("db: ok", "lake: ok s3://cxr-test-lake", "warehouse: ok", "ssh: ok"):
        assert store in out.stdout


def _bad_db_password(services):
    url = services["CXR_DB_URL"]
    password = url.split("://", 1)[1].split("@", 1)[0].split(":", 1)[1]
    return url.replace(f":{password}@", ":wrong-password@")


BAD = {
    "unreachable-db": (["db", "status"], lambda s: {"CXR_DB_URL": f"mysql+pymysql://cxr:x@127.0.0.1:{free_port()}/cxr"},
                       "CXR_DB_URL"),
    "wrong-mariadb-password": (["db", "upgrade"], lambda s: {"CXR_DB_URL": _bad_db_password(s)}, "CXR_DB_URL"),
    "unknown-db-scheme": (["db", "status"], lambda s: {"CXR_DB_URL": "postgresql://u:p@127.0.0.1/cxr"}, "CXR_DB_URL"),
    "unknown-lake-scheme": (["lake", "ls"], lambda s: {"CXR_LAKE_URL": "ftp://host/dir"}, "CXR_LAKE_URL"),
    "unknown-warehouse-scheme": (["services", "check"], lambda s: {"CXR_WAREHOUSE_URL": "redis://127.0.0.1"},
                                 "CXR_WAREHOUSE_URL"),
    "missing-bucket": (["lake", "ls"], lambda s: {"CXR_LAKE_URL": "s3://cxr-no-such-bucket",
                                                  "CXR_S3_ENDPOINT_URL": s["CXR_S3_ENDPOINT_URL"]}, "CXR_LAKE_URL"),
    "missing-tls-ca-file": (["services", "check"], lambda s: {"CXR_WAREHOUSE_URL": s["CXR_WAREHOUSE_URL"],
                                                              "CXR_WAREHOUSE_TLS_CA_FILE": "/nonexistent/ca.pem"},
                            "CXR_WAREHOUSE_TLS_CA_FILE"),
    "missing-tls-ca-file-in-uri": (["services", "check"], lambda s: {
        "CXR_WAREHOUSE_URL": "mongodb://127.0.0.1:27017/?tls=true&tlsCAFile=/nonexistent/global-bundle.pem"},
        "CXR_WAREHOUSE_URL"),
    "unreachable-warehouse": (["services", "check"], lambda s: {
        "CXR_WAREHOUSE_URL": f"mongodb://127.0.0.1:{free_port()}/?directConnection=true&serverSelectionTimeoutMS=500"},
        "CXR_WAREHOUSE_URL"),
    "unknown-ssh-host-key": (["services", "check"], lambda s: {
        "CXR_SSH_HOST": s["CXR_SSH_HOST"], "CXR_SSH_PORT": s["CXR_SSH_PORT"], "CXR_SSH_USER": s["CXR_SSH_USER"],
        "CXR_SSH_KEY_FILE": s["CXR_SSH_KEY_FILE"], "CXR_SSH_KNOWN_HOSTS": "/dev/null",
        "CXR_WAREHOUSE_URL": s["CXR_WAREHOUSE_URL"]}, "CXR_SSH_KNOWN_HOSTS"),
    "bad-number": (["db", "status"], lambda s: {"CXR_DB_CONNECT_TIMEOUT": "soon"}, "CXR_DB_CONNECT_TIMEOUT"),
}


@pytest.mark.integration
@pytest.mark.parametrize("case", list(BAD))
def test_bad_configuration_is_one_line_exit_2(case, services, run_cxr):
    args, make_env, setting = BAD[case]
    assert_one_config_line(run_cxr(*args, env=make_env(services)), setting)


@pytest.mark.integration
def test_service_start_is_idempotent_and_stop_ends_its_pid(tmp_path):
    from cxr.devtools import services as svc

    server = svc.Warehouse(tmp_path / "services", free_port())
    try:
        assert server.start() == "started"
        pid = server.status().pid
        assert server.status().up and svc.pid_alive(pid)
        assert server.start() == "already running" and server.status().pid == pid
    finally:
        stopped = server.stop()
    assert stopped and not svc.pid_alive(pid)
    assert not server.status().up and not server.state_file.exists()
    assert server.stop() is False  # nothing left to stop
