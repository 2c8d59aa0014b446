"""SSH exec, SFTP and tunnels against the local sshd, with strict host-key checking."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from cxr.errors import ConfigError, CxrError
from cxr.stores.remote import SSHTarget, get_file, open_tunnel, put_file, run_remote, session


def _keygen(path: Path) -> Path:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True,
                   stdin=subprocess.DEVNULL)
    return path


def _with(target: SSHTarget, **changes) -> SSHTarget:
    return SSHTarget(**{**target.__dict__, **changes})


@pytest.mark.unit
@pytest.mark.parametrize("spec, expected", [
    ("ec2-user@bastion.example.com", ("bastion.example.com", 22, "ec2-user")),
    ("ubuntu@10.0.0.5:2200", ("10.0.0.5", 2200, "ubuntu")),
    ("host.only", ("host.only", 22, None)),
    ("me@[::1]:2222", ("::1", 2222, "me")),
])
def test_parse_target(spec, expected):
    t = SSHTarget.parse(spec, key_file=Path("/k"), known_hosts=Path("/kh"))
    assert (t.host, t.port, t.user) == expected
    assert t.key_file == Path("/k") and t.known_hosts == Path("/kh")


@pytest.mark.unit
def test_parse_and_settings_errors(make_settings):
    with pytest.raises(ConfigError):
        SSHTarget.parse("me@host:notaport")
    with pytest.raises(ConfigError) as err:
        SSHTarget.from_settings(make_settings())
    assert err.value.setting == "CXR_SSH_HOST"
    t = SSHTarget.from_settings(make_settings(ssh_host="h", ssh_port=2200, ssh_user="u", ssh_known_hosts="/kh"))
    assert (t.host, t.port, t.user, t.known_hosts, t.host_key_name) == ("h", 2200, "u", Path("/kh"), "[h]:2200")


@pytest.mark.integration
def test_run_remote_streams_output_and_exit_status(ssh_target):
    lines: list[str] = []
    result = run_remote(ssh_target, ["sh", "-c", "echo one; echo two; echo oops >&2; exit 3"], on_stdout=lines.append)
    assert result.exit_status == 3 and not result.ok
    assert lines == ["one", "two"]
    assert result.stderr == "oops\n"
    with pytest.raises(CxrError, match="exit status 3"):
        run_remote(ssh_target, "exit 3", check=True)


@pytest.mark.integration
def test_run_remote_env_cwd_and_session_reuse(ssh_target, tmp_path):
    with session(ssh_target) as client:
        r = run_remote(ssh_target, 'printf "%s|" "$VALUE"; pwd', env={"VALUE": "it's $HOME; rm -rf /"},
                       cwd=str(tmp_path), client=client)
        assert r.stdout == f"it's $HOME; rm -rf /|{tmp_path}\n"
        assert run_remote(ssh_target, "echo again", client=client).stdout == "again\n"


@pytest.mark.integration
def test_sftp_put_and_get(ssh_target, tmp_path):
    src = tmp_path / "src.bin"
    src.write_bytes(bytes(range(256)) * 100)
    remote = str(tmp_path / "remote" / "deep" / "copy.bin")
    put_file(ssh_target, src, remote)
    assert Path(remote).read_bytes() == src.read_bytes()
    back = tmp_path / "back.bin"
    get_file(ssh_target, remote, back)
    assert back.read_bytes() == src.read_bytes()
    with pytest.raises(CxrError):
        get_file(ssh_target, str(tmp_path / "missing"), tmp_path / "x")


@pytest.mark.integration
def test_tunnel_reaches_the_warehouse(ssh_target, services):
    from pymongo import MongoClient

    port = int(services["CXR_WAREHOUSE_URL"].rsplit(":", 1)[1].split("/")[0])
    with open_tunnel(ssh_target, "127.0.0.1", port) as (host, local_port):
        assert local_port != port
        with MongoClient(f"mongodb://{host}:{local_port}/?directConnection=true", serverSelectionTimeoutMS=5000) as c:
            assert c.admin.command("ping")["ok"] == 1


@pytest.mark.integration
def test_unknown_host_key_is_refused(ssh_target, tmp_path):
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    target = _with(ssh_target, known_hosts=empty)
    for attempt in (lambda: run_remote(target, "true"), lambda: open_tunnel(target, "127.0.0.1", 1).__enter__()):
        with pytest.raises(ConfigError) as err:
            attempt()
        assert err.value.setting == "CXR_SSH_KNOWN_HOSTS"
        assert "not in" in str(err.value) and "SHA256:" in str(err.value)
    assert empty.read_text() == ""  # nothing was auto-added


@pytest.mark.integration
def test_changed_host_key_missing_file_and_wrong_client_key(ssh_target, tmp_path):
    other = _keygen(tmp_path / "other")
    kt, blob = other.with_suffix(".pub").read_text().split()[:2]
    forged = tmp_path / "forged_known_hosts"
    forged.write_text(f"{ssh_target.host_key_name} {kt} {blob}\n")
    with pytest.raises(ConfigError) as err:
        run_remote(_with(ssh_target, known_hosts=forged), "true")
    assert err.value.setting == "CXR_SSH_KNOWN_HOSTS" and "does not match" in str(err.value)

    with pytest.raises(ConfigError) as err:
        run_remote(_with(ssh_target, known_hosts=tmp_path / "none"), "true")
    assert err.value.setting == "CXR_SSH_KNOWN_HOSTS"

    with pytest.raises(ConfigError) as err:
        run_remote(_with(ssh_target, key_file=other), "true")
    assert err.value.setting == "CXR_SSH_KEY_FILE"
