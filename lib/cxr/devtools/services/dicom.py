"""The hospital's side for development and tests: Orthanc (Debian) as the PACS, and cxr's own listener.

:class:`Orthanc` runs Debian's Orthanc unprivileged on loopback with a private JSON config, its
storage and index under its service directory, HTTP and DICOM ports of its own, and a Lua routing
rule (``OnStoredInstance``) that forwards every new CR/DX instance to the modality ``cxr``, the
listener. :class:`DicomListener` runs ``cxr dicom listen`` against the local servers' DB and lake
(the services env), allowing Orthanc's AE and the dcmtk tools' default AE, and delivering its
reports to Orthanc when it runs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

from cxr.devtools.services.process import HOST, Service, _run, _which
from cxr.errors import ConfigError

ORTHANC_AET = "ORTHANC"
LISTENER_AET = "CXR"
STORESCU_AET = "STORESCU"  # dcmtk's default calling AE title

#: Orthanc's routing rule: new CR and DX instances go to the modality "cxr" (not the SRs cxr returns).
ROUTE_LUA = """
function OnStoredInstance(instanceId, tags, metadata, origin)
  local modality = tags['Modality']
  if (modality == 'CR' or modality == 'DX') and origin['RequestOrigin'] ~= 'Lua' then
    SendToModality(instanceId, 'cxr')
  end
end
"""


class Orthanc(Service):
    """Debian's Orthanc: DICOM on ``port``, REST on ``http_port``, forwarding CR/DX to ``listener``."""

    name = "orthanc"

    def __init__(self, services_dir: Path, port: int, *, http_port: int, listener: tuple[str, int] | None = None):
        super().__init__(services_dir, port)
        self.http_port = http_port
        self.listener = listener or (LISTENER_AET, 11112)

    @property
    def config_path(self) -> Path:
        return self.dir / "orthanc.json"

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.http_port}"

    def prepare(self) -> None:
        if not _which("Orthanc", "/usr/sbin"):
            raise ConfigError("Orthanc is not installed: apt-get install -y orthanc (scripts/system_deps.sh test)",
                              setting="CXR_DATA_DIR")
        for sub in ("storage", "index", "logs"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        (self.dir / "route.lua").write_text(ROUTE_LUA)
        config = {
            "Name": "cxr-dev-pacs", "StorageDirectory": str(self.dir / "storage"),
            "IndexDirectory": str(self.dir / "index"), "HttpPort": self.http_port, "DicomPort": self.port,
            "DicomAet": ORTHANC_AET, "RemoteAccessAllowed": False, "AuthenticationEnabled": False,
            "HttpServerEnabled": True, "Plugins": [], "LuaScripts": [str(self.dir / "route.lua")],
            "DicomModalities": {"cxr": [self.listener[0], HOST, self.listener[1]]},
            "DicomAlwaysAllowStore": True, "DicomAlwaysAllowEcho": True, "DicomScuTimeout": 10,
            "StableAge": 2, "ConcurrentJobs": 2, "HttpTimeout": 30,
        }
        self.config_path.write_text(json.dumps(config, indent=2))

    def argv(self) -> list[str]:
        exe = _which("Orthanc", "/usr/sbin") or "/usr/sbin/Orthanc"
        return [exe, f"--logdir={self.dir / 'logs'}", str(self.config_path)]

    def probe(self) -> None:
        with urllib.request.urlopen(f"{self.url}/system", timeout=2) as rsp:  # noqa: S310 - loopback URL we built
            json.loads(rsp.read())

    @property
    def results_dest(self) -> str:
        """``CXR_DICOM_RESULTS_DEST`` for a listener reporting to this Orthanc."""
        return f"{ORTHANC_AET}@{HOST}:{self.port}"

    def api(self, method: str, path: str, body: object | None = None, timeout: float = 30) -> object:
        """One REST call to Orthanc; the decoded JSON answer."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(f"{self.url}{path}", data=data, method=method,  # noqa: S310 - loopback
                                     headers={"Content-Type": "application/json"} if data else {})
        with urllib.request.urlopen(req, timeout=timeout) as rsp:  # noqa: S310 - loopback URL we built
            raw = rsp.read()
        return json.loads(raw) if raw else None


class DicomListener(Service):
    """``cxr dicom listen`` on ``port`` with the local servers' DB and lake (``base_env``)."""

    name = "dicom"

    def __init__(self, services_dir: Path, port: int, *, base_env: dict[str, str] | None = None,
                 data_dir: Path | None = None, models_dir: Path | None = None, orthanc_port: int | None = None):
        super().__init__(services_dir, port)
        self.base_env = dict(base_env or {})
        self.data_dir = Path(data_dir).resolve() if data_dir else services_dir.parent.resolve()
        self.models_dir = Path(models_dir).resolve() if models_dir else Path("models").resolve()
        self.orthanc_port = orthanc_port

    def environ(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CXR_")}
        env.update(self.base_env)
        env.update({
            "CXR_DATA_DIR": str(self.data_dir), "CXR_MODELS_DIR": str(self.models_dir),
            "CXR_ENV_FILE": str(self.dir / "no.env"), "CXR_DICOM_PORT": str(self.port),
            "CXR_DICOM_BIND": HOST, "CXR_DICOM_AE_TITLE": LISTENER_AET,
            "CXR_DICOM_ALLOWED_AES": f"{ORTHANC_AET}@{HOST},{STORESCU_AET}@{HOST}",
        })
        if self.orthanc_port:
            env["CXR_DICOM_RESULTS_DEST"] = f"{ORTHANC_AET}@{HOST}:{self.orthanc_port}"
        return env

    def prepare(self) -> None:
        """Migrate the DB the listener will store into (it refuses to start on an older schema)."""
        res = subprocess.run([sys.executable, "-m", "cxr", "db", "upgrade"], env=self.environ(), cwd=self.dir,
                             stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False)
        if res.returncode != 0:
            with self.log.open("a") as fh:
                fh.write(res.stdout + res.stderr)
            _run(["false"], self.log, "cxr db upgrade for the listener")

    def argv(self) -> list[str]:
        return [sys.executable, "-m", "cxr", "dicom", "listen"]

    def probe(self) -> None:
        """A C-ECHO from the dcmtk AE title answers (the listener allows it)."""
        from cxr.dicom.scu import Peer, echo  # the harness imports the adapter only here

        if echo(Peer(LISTENER_AET, HOST, self.port), calling_ae=STORESCU_AET, timeout=2) != 0:
            raise OSError("C-ECHO failed")

    def env(self) -> dict[str, str]:
        return {}
