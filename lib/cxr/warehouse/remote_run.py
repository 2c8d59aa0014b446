"""Run the warehouse notebook on a remote host over SSH (the seed ran its ETL on EC2 beside DocumentDB).

``cxr warehouse --via-ssh user@host[:port]`` connects with :mod:`cxr.remote` (paramiko; the host
key must be in the known_hosts file, never auto-added; the key file comes from the settings),
runs papermill there on ``notebooks/warehouse_etl.ipynb`` in the remote checkout
(``CXR_SSH_REMOTE_WORKDIR``) with ``CXR_SSH_REMOTE_PYTHON`` and the parameters, copies the executed
notebook back over SFTP and keeps it as the run record in the lake
(``runs/<dag_id>/<logical date>/warehouse_etl.ipynb`` + ``.html``), also when the run failed.

The remote run reads its own configuration (its ``.env`` in the checkout, or the file named by
``remote_env_file``): no URL or password travels on the command line.
"""

from __future__ import annotations

import shlex
import tempfile
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cxr.errors import CxrError, InputError

NOTEBOOK = "notebooks/warehouse_etl.ipynb"
TASK = "warehouse_etl"
KERNEL = "cxr"


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


def papermill_command(python: str, output: str, *, mode: str, batch_size: int | None) -> list[str]:
    """The remote argv (pure): papermill on the warehouse notebook with its parameters."""
    if mode not in ("incremental", "rebuild"):
        raise InputError(f"unknown mode {mode!r}: use incremental or rebuild")
    argv = [python, "-m", "papermill", NOTEBOOK, output, "-k", KERNEL, "--no-progress-bar", "--log-output",
            "-p", "mode", mode]
    if batch_size is not None:
        argv += ["-p", "batch_size", str(int(batch_size))]
    return argv


def run_via_ssh(spec: str, settings=None, *, mode: str = "incremental", batch_size: int | None = None,  # noqa: ANN001
                remote_env_file: str | None = None, lake=None, dag_id: str = "manual",  # noqa: ANN001
                output: Path | None = None, on_line: Callable[[str], None] | None = None,
                timeout: float | None = None) -> RemoteRun:
    """Run the warehouse notebook on ``user@host[:port]`` and keep the executed notebook as the record."""
    from cxr.config import get_settings
    from cxr.remote import SSHTarget, get_file, run_remote, session
    from cxr.runs import html_key, notebook_html, record_key

    s = settings or get_settings()
    target = SSHTarget.parse(spec, key_file=s.ssh_key_file, known_hosts=s.ssh_known_hosts)
    remote_out = f"/tmp/cxr-{TASK}-{uuid.uuid4().hex}.ipynb"
    argv = papermill_command(s.ssh_remote_python, remote_out, mode=mode, batch_size=batch_size)
    env = {"CXR_ENV_FILE": remote_env_file} if remote_env_file else None
    started = datetime.now(UTC).replace(microsecond=0)
    with session(target) as client, tempfile.TemporaryDirectory(prefix="cxr-remote-") as tmp:
        result = run_remote(target, argv, cwd=s.ssh_remote_workdir, env=env, client=client, timeout=timeout,
                            on_stdout=on_line, on_stderr=on_line)
        local = Path(tmp) / f"{TASK}.ipynb"
        try:
            get_file(target, remote_out, local, client=client)
        except CxrError:
            local = None  # papermill did not start (bad python / workdir / kernel): no record to keep
        finally:
            _remove_remote(client, remote_out)
        record_uri = html_uri = None
        copy = None
        if local is not None:
            if lake is None:
                from cxr.stores.lake import lake_from_settings

                lake = lake_from_settings(s)
            key = record_key(dag_id, started, TASK)
            lake.put_file(key, local, content_type="application/x-ipynb+json")
            import nbformat

            lake.put(html_key(key), notebook_html(nbformat.read(local, as_version=4)).encode(), content_type="text/html")
            record_uri, html_uri = lake.uri(key), lake.uri(html_key(key))
            if output is not None:
                copy = Path(output)
                copy.parent.mkdir(parents=True, exist_ok=True)
                copy.write_bytes(local.read_bytes())
    run = RemoteRun(str(target), shlex.join(argv), result.exit_status, record_uri, html_uri, copy)
    if not run.ok:
        last = (result.stderr.strip().splitlines() or result.stdout.strip().splitlines() or [""])[-1]
        where = f"; record: {record_uri}" if record_uri else ""
        raise CxrError(f"remote warehouse run on {target} failed (exit status {result.exit_status}): {last}{where}")
    return run


def _remove_remote(client, path: str) -> None:  # noqa: ANN001 - paramiko SSHClient
    try:
        with client.open_sftp() as sftp:
            sftp.remove(path)
    except OSError:
        pass
