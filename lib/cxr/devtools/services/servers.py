"""The four servers standing in for AWS: MariaDB (RDS), moto's S3, SecantusDB (DocumentDB), sshd (bastion)."""

from __future__ import annotations

import getpass
import hashlib
import os
import secrets
import shutil
import socket
import sys
import tempfile
from pathlib import Path

import boto3
import pymysql
from botocore.client import BaseClient
from pymongo import MongoClient

from cxr.devtools.services.process import HOST, Service, _run, _which

BUCKET = "cxr-test-lake"
DB_NAME = "cxr"
DB_USER = "cxr"
#: Credentials moto accepts; never real ones.
TEST_AWS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


class MariaDB(Service):
    name = "mariadb"

    @property
    def data(self) -> Path:
        return self.dir / "data"

    @property
    def socket_path(self) -> Path:
        path = self.dir / "run" / "mysqld.sock"
        if len(str(path)) > 100:  # a Unix socket path is limited to ~107 bytes
            digest = hashlib.sha256(str(path).encode()).hexdigest()[:12]
            path = Path(tempfile.gettempdir()) / f"cxr-mysqld-{digest}.sock"
        return path

    @property
    def password(self) -> str:
        path = self.dir / "password"
        if not path.exists():
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(secrets.token_hex(16))
        return path.read_text().strip()

    def prepare(self) -> None:
        (self.dir / "run").mkdir(parents=True, exist_ok=True)
        if (self.dir / ".installed").exists():
            return
        shutil.rmtree(self.data, ignore_errors=True)
        argv = [_which("mariadb-install-db", "/usr/bin") or "mariadb-install-db", "--no-defaults",
                f"--datadir={self.data}", "--auth-root-authentication-method=normal", "--skip-test-db"]
        if os.geteuid() == 0:
            argv.append("--user=root")
        _run(argv, self.log, "mariadb-install-db")
        (self.dir / ".installed").touch()

    def argv(self) -> list[str]:
        argv = [_which("mariadbd", "/usr/sbin") or "mariadbd", "--no-defaults", f"--datadir={self.data}",
                f"--bind-address={HOST}", f"--port={self.port}", f"--socket={self.socket_path}",
                f"--pid-file={self.dir / 'run' / 'mysqld.pid'}", f"--log-error={self.dir / 'mariadb-error.log'}",
                "--skip-name-resolve", "--innodb-buffer-pool-size=128M", "--innodb-log-file-size=16M",
                "--character-set-server=utf8mb4", "--collation-server=utf8mb4_unicode_ci",
                "--max-connections=300"]
        if os.geteuid() == 0:
            argv.append("--user=root")
        return argv

    def _root(self) -> pymysql.connections.Connection:
        return pymysql.connect(unix_socket=str(self.socket_path), user="root", connect_timeout=2, autocommit=True)

    def probe(self) -> None:
        self._root().close()

    def bootstrap(self) -> None:
        pw = self.password
        conn = self._root()
        try:
            with conn.cursor() as cur:
                cur.execute(f"CREATE DATABASE IF NOT EXISTS `{DB_NAME}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
                for host in (HOST, "localhost"):
                    cur.execute("CREATE USER IF NOT EXISTS %s@%s IDENTIFIED BY %s", (DB_USER, host, pw))
                    cur.execute("ALTER USER %s@%s IDENTIFIED BY %s", (DB_USER, host, pw))
                    cur.execute(f"GRANT ALL PRIVILEGES ON `{DB_NAME}`.* TO %s@%s", (DB_USER, host))
                    # one database per test: cxr_<anything>
                    cur.execute(f"GRANT ALL PRIVILEGES ON `{DB_NAME}\\_%%`.* TO %s@%s", (DB_USER, host))
                cur.execute("FLUSH PRIVILEGES")
        finally:
            conn.close()

    def env(self) -> dict[str, str]:
        return {"CXR_DB_URL": f"mysql+pymysql://{DB_USER}:{self.password}@{HOST}:{self.port}/{DB_NAME}?charset=utf8mb4"}


class S3(Service):
    name = "s3"

    def argv(self) -> list[str]:
        return [sys.executable, "-m", "moto.server", "-H", HOST, "-p", str(self.port)]

    @property
    def endpoint(self) -> str:
        return f"http://{HOST}:{self.port}"

    def client(self) -> BaseClient:
        return s3_client(self.endpoint)

    def probe(self) -> None:
        self.client().list_buckets()

    def bootstrap(self) -> None:
        client = self.client()
        names = {b["Name"] for b in client.list_buckets().get("Buckets", [])}
        if BUCKET not in names:
            client.create_bucket(Bucket=BUCKET)

    def env(self) -> dict[str, str]:
        return {"CXR_LAKE_URL": f"s3://{BUCKET}", "CXR_S3_ENDPOINT_URL": self.endpoint,
                "CXR_S3_REGION": TEST_AWS["AWS_DEFAULT_REGION"], **TEST_AWS}


def s3_client(endpoint: str) -> BaseClient:
    """A boto3 S3 client for a local test endpoint with the test credentials."""
    return boto3.session.Session(aws_access_key_id=TEST_AWS["AWS_ACCESS_KEY_ID"],
                                 aws_secret_access_key=TEST_AWS["AWS_SECRET_ACCESS_KEY"],
                                 region_name=TEST_AWS["AWS_DEFAULT_REGION"]).client("s3", endpoint_url=endpoint)


class Warehouse(Service):
    name = "warehouse"

    def argv(self) -> list[str]:
        return [sys.executable, "-m", "secantus", "--host", HOST, "--port", str(self.port),
                "--storage-path", str(self.dir / "data"), "--cache-size", "256M", "--log-level", "WARNING"]

    @property
    def uri(self) -> str:
        return f"mongodb://{HOST}:{self.port}/?directConnection=true"

    def probe(self) -> None:
        with MongoClient(self.uri, serverSelectionTimeoutMS=1000, connectTimeoutMS=1000) as client:
            client.admin.command("ping")

    def env(self) -> dict[str, str]:
        return {"CXR_WAREHOUSE_URL": self.uri}


class SSHD(Service):
    name = "sshd"

    @property
    def host_key(self) -> Path:
        return self.dir / "ssh_host_ed25519_key"

    @property
    def client_key(self) -> Path:
        return self.dir / "id_ed25519"

    @property
    def known_hosts(self) -> Path:
        return self.dir / "known_hosts"

    @property
    def user(self) -> str:
        return getpass.getuser()

    def _keygen(self, path: Path, comment: str) -> None:
        if path.exists() and path.with_suffix(".pub").exists():
            return
        path.unlink(missing_ok=True)
        _run([_which("ssh-keygen", "/usr/bin") or "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment,
              "-f", str(path)], self.log, "ssh-keygen")

    def prepare(self) -> None:
        self._keygen(self.host_key, "cxr-services-host")
        self._keygen(self.client_key, "cxr-services-client")
        shutil.copyfile(self.client_key.with_suffix(".pub"), self.dir / "authorized_keys")
        host_pub = self.host_key.with_suffix(".pub").read_text().split()
        self.known_hosts.write_text(f"[{HOST}]:{self.port} {host_pub[0]} {host_pub[1]}\n")
        if os.geteuid() == 0:
            Path("/run/sshd").mkdir(mode=0o755, parents=True, exist_ok=True)
        (self.dir / "sshd_config").write_text(
            "\n".join([
                f"Port {self.port}",
                f"ListenAddress {HOST}",
                f"HostKey {self.host_key}",
                f"PidFile {self.dir / 'sshd.pid'}",
                f"AuthorizedKeysFile {self.dir / 'authorized_keys'}",
                "PubkeyAuthentication yes",
                "PasswordAuthentication no",
                "KbdInteractiveAuthentication no",
                "UsePAM no",
                "PermitRootLogin prohibit-password",
                f"AllowUsers {self.user}",
                "AllowTcpForwarding yes",
                "Subsystem sftp internal-sftp",
                "StrictModes no",
                "PrintMotd no",
                "LogLevel INFO",
                "",
            ])
        )

    def argv(self) -> list[str]:
        return [_which("sshd", "/usr/sbin") or "/usr/sbin/sshd", "-f", str(self.dir / "sshd_config"), "-D", "-e"]

    def probe(self) -> None:
        with socket.create_connection((HOST, self.port), timeout=1) as conn:
            if not conn.recv(64).startswith(b"SSH-"):
                raise OSError("no SSH banner")

    def env(self) -> dict[str, str]:
        return {"CXR_SSH_HOST": HOST, "CXR_SSH_PORT": str(self.port), "CXR_SSH_USER": self.user,
                "CXR_SSH_KEY_FILE": str(self.client_key), "CXR_SSH_KNOWN_HOSTS": str(self.known_hosts)}


SERVERS: dict[str, type[Service]] = {"mariadb": MariaDB, "s3": S3, "warehouse": Warehouse, "sshd": SSHD}


