"""Run the warehouse notebook on a remote host over SSH (the seed ran its ETL on EC2 beside DocumentDB).

``cxr warehouse --via-ssh user@host[:port]`` connects with :mod:`cxr.stores.remote` (paramiko; the
host key must be in the known_hosts file, never auto-added; the key file comes from the settings)
and runs the command :func:`cxr.stores.runs.remote_notebook_command` builds -- the same one the
warehouse DAG's SSH branch runs: ``cxr notebook run warehouse_etl`` in the remote checkout
(``CXR_SSH_REMOTE_WORKDIR``) with ``CXR_SSH_REMOTE_PYTHON``. The remote run stores its record in its
lake; the executed notebook is also copied back over SFTP and stored here by the same writer
(:func:`cxr.stores.runs.write_record`, same key), also when the run failed, so the record is in this
side's lake even where the two lakes differ.

The remote run reads its own configuration (its ``.env`` in the checkout, or the file named by
``remote_env_file``): no URL or password travels on the command line.
"""

from __future__ import annotations

import tempfile
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import paramiko

from cxr.config import Settings, get_settings
from cxr.errors import CxrError, InputError
from cxr.stores import remote
from cxr.stores.catalog import Stores
from cxr.stores.layout import format_logical_date, html_key, record_key
from cxr.stores.lake import Lake
from cxr.stores.runs import remote_notebook_command, write_record
from cxr.warehouse.etl import MODES, Mode

NOTEBOOK = "warehouse_etl"


@dataclass
class RemoteRun:
    target: str
    command: str
    exit_status: int
    record_uri: str | None
    html_uri: str | None
    local_copy: Path | None

    @property
    def ok(self) -> bool:
        return self.exit_status == 0


def warehouse_command(settings: Settings, *, mode: Mode, batch_size: int | None, dag_id: str, logical_date: str,
                      output: str | None = None) -> str:
    """The remote shell command for the warehouse notebook (the one builder, with this notebook's parameters)."""
    if mode not in MODES:
        raise InputError(f"unknown mode {mode!r}: use {' or '.join(MODES)}")
    return remote_notebook_command(NOTEBOOK, {"mode": mode, "batch_size": batch_size},
                                   python=settings.ssh_remote_python, dag_id=dag_id, logical_date=logical_date,
                                   task=NOTEBOOK, workdir=settings.ssh_remote_workdir, output=output)


def run_via_ssh(spec: str, settings: Settings | None = None, *, mode: Mode = "incremental",
                batch_size: int | None = None, remote_env_file: str | None = None, lake: Lake | None = None,
                dag_id: str = "manual", output: Path | None = None, on_line: Callable[[str], None] | None = None,
                timeout: float | None = None) -> RemoteRun:
    """Run the warehouse notebook on ``user@host[:port]`` and keep the executed notebook as the record here."""
    s = settings or get_settings()
    target = remote.SSHTarget.parse(spec, key_file=s.ssh_key_file, known_hosts=s.ssh_known_hosts)
    remote_out = f"/tmp/cxr-{NOTEBOOK}-{uuid.uuid4().hex}.ipynb"
    logical_date = format_logical_date(datetime.now(UTC).replace(microsecond=0))
    command = warehouse_command(s, mode=mode, batch_size=batch_size, dag_id=dag_id, logical_date=logical_date,
                                output=remote_out)
    env = {"CXR_ENV_FILE": remote_env_file} if remote_env_file else None
    key = record_key(dag_id, logical_date, NOTEBOOK)
    record_uri = html_uri = copy = None
    with remote.session(target) as client, tempfile.TemporaryDirectory(prefix="cxr-remote-") as tmp:
        result = remote.run_remote(target, command, env=env, client=client, timeout=timeout,
                                   on_stdout=on_line, on_stderr=on_line)
        local = _fetch(target, client, remote_out, Path(tmp) / f"{NOTEBOOK}.ipynb")
        if local is not None:
            lake = lake or Stores.open(s).lake
            write_record(local, key, lake.put)
            record_uri, html_uri = lake.uri(key), lake.uri(html_key(key))
            if output is not None:
                copy = Path(output)
                copy.parent.mkdir(parents=True, exist_ok=True)
                copy.write_bytes(local.read_bytes())
    run = RemoteRun(str(target), command, result.exit_status, record_uri, html_uri, copy)
    if not run.ok:
        last = (result.stderr.strip().splitlines() or result.stdout.strip().splitlines() or [""])[-1]
        where = f"; record: {record_uri}" if record_uri else ""
        raise CxrError(f"remote warehouse run on {target} failed (exit status {result.exit_status}): {last}{where}")
    return run


def _fetch(target: remote.SSHTarget, client: paramiko.SSHClient, remote_path: str, local: Path) -> Path | None:
    """Copy the remote executed notebook here and remove it there; None when the run left none."""
    try:
        remote.get_file(target, remote_path, local, client=client)
    except CxrError:
        return None  # the notebook never started (bad python / workdir / kernel): no record to keep
    finally:
        try:
            with client.open_sftp() as sftp:
                sftp.remove(remote_path)
        except OSError:
            pass
    return local
