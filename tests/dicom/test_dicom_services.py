"""`cxr services`' optional DICOM services: ports, names, and Orthanc's routing rule on its own."""

from __future__ import annotations

import pytest
from dicom_helpers import dcmtk, free_port, write_phantoms


@pytest.mark.unit
def test_optional_services_have_ports_and_unknown_names_are_refused(tmp_path):
    from cxr.devtools import services as svc
    from cxr.errors import ConfigError

    ports = svc.parse_ports("dicom=11200,orthanc=11201,orthanc-http=8099")
    assert (ports["dicom"], ports["orthanc"], ports["orthanc-http"], ports["mariadb"]) == (11200, 11201, 8099, 3307)
    with pytest.raises(ConfigError, match="optional ones are orthanc, dicom"):
        svc.up(tmp_path, extras=("pacs",))
    assert not (tmp_path / "services" / "mariadb").exists()  # refused before anything started
    assert [s.name for s in svc.status(tmp_path)] == list(svc.NAMES)  # optional ones listed only when running


@pytest.mark.integration
def test_orthanc_forwards_a_new_dx_instance_to_its_cxr_modality(orthanc, tmp_path):
    """The Lua rule alone, with a pynetdicom SCP standing in for cxr: a DX goes on, nothing else does."""
    from pynetdicom import AE, AllStoragePresentationContexts, evt

    got = []
    ae = AE(ae_title="CXR")
    for cx in AllStoragePresentationContexts:
        ae.add_supported_context(cx.abstract_syntax)
    port = free_port()
    ae.start_server(("127.0.0.1", port), block=False,
                    evt_handlers=[(evt.EVT_C_STORE, lambda e: got.append(e.dataset.Modality) or 0x0000)])
    try:
        pacs = orthanc(port)
        files = write_phantoms(tmp_path / "in", [900])
        assert dcmtk("storescu", "-aet", "MODALITY", "-aec", "ORTHANC", "127.0.0.1", str(pacs.port),
                     str(files[0])).returncode == 0
        import time

        deadline = time.monotonic() + 60
        while not got and time.monotonic() < deadline:
            time.sleep(0.2)
        assert got == ["DX"]
        assert pacs.api("GET", "/statistics")["CountInstances"] == 1
    finally:
        ae.shutdown()
