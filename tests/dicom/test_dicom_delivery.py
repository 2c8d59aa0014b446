"""Results back to the PACS: retries with back-off, the undelivered record and report, re-delivery; TLS."""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
import time

import pytest
from dicom_helpers import free_port, phantom_dataset, send
from sqlalchemy import select

from cxr.stores.schema import transaction

pytestmark = pytest.mark.integration


class Pacs:
    """A Storage SCP (pynetdicom) standing in for the PACS: keeps every dataset it receives."""

    def __init__(self, port: int, ssl_context: ssl.SSLContext | None = None):
        from pynetdicom import AE, AllStoragePresentationContexts, evt
        from pynetdicom.sop_class import Verification

        self.received: list = []
        self.ae = AE(ae_title="PACS")
        for cx in AllStoragePresentationContexts:
            self.ae.add_supported_context(cx.abstract_syntax)
        self.ae.add_supported_context(Verification)

        def on_store(event):
            ds = event.dataset
            ds.file_meta = event.file_meta
            self.received.append(ds)
            return 0x0000

        self.server = self.ae.start_server(("127.0.0.1", port), block=False, ssl_context=ssl_context,
                                           evt_handlers=[(evt.EVT_C_STORE, on_store)])

    def close(self) -> None:
        self.ae.shutdown()


def _status(engine, transaction_id: int):
    with engine.connect() as conn:
        return conn.execute(select(transaction.c.sr_status, transaction.c.sr_error)
                            .where(transaction.c.transaction_id == transaction_id)).one()


def _wait_status(engine, transaction_id: int, want: str, timeout: float = 60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        row = _status(engine, transaction_id)
        if row.sr_status == want:
            return row
        time.sleep(0.1)
    raise AssertionError(f"transaction {transaction_id}: {row}")


def test_a_destination_that_is_down_is_retried_recorded_reported_and_redelivered(
        sqlite_engine, local_lake, listen, make_settings):
    from cxr import report

    pacs_port = free_port()
    ln = listen(sqlite_engine, local_lake, dicom_results_dest=f"PACS@127.0.0.1:{pacs_port}", dicom_send_attempts=3,
                dicom_send_backoff_s=0.2, dicom_timeout_s=2)
    original = phantom_dataset(90)
    t0 = time.monotonic()
    assert send(ln.scp.port, [original]) == [0x0000]  # stored; the report goes on its own
    row = _wait_status(sqlite_engine, 1, "failed")
    assert time.monotonic() - t0 >= 0.2 + 0.4  # two back-off waits between three attempts
    assert row.sr_error.startswith(f"no association with PACS@127.0.0.1:{pacs_port}") and "after 3 attempt(s)" in row.sr_error
    settings = ln.receiver.settings.model_copy(update={"db_url": sqlite_engine.url.render_as_string(False)})
    r = report.gather(settings)
    assert [t for t, _when, _why in r.undelivered] == [1]
    assert report.undelivered_table(r.undelivered)["transaction_id"].tolist() == [1]

    pacs = Pacs(pacs_port)
    try:
        assert send(ln.scp.port, [original]) == [0x0000]  # the PACS sends the image again
        _wait_status(sqlite_engine, 1, "delivered")
        assert len(pacs.received) == 1
        sr = pacs.received[0]
        assert sr.SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.34"
        assert sr.StudyInstanceUID == original.StudyInstanceUID  # filed in the original study
        assert sr.PatientName == original.PatientName and sr.PatientID == original.PatientID
        ref = sr.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0].ReferencedSOPSequence[0]
        assert ref.ReferencedSOPInstanceUID == original.SOPInstanceUID
    finally:
        pacs.close()
    assert report.gather(settings).undelivered == []


def _tls_files(tmp_path):
    """A CA, a server certificate for 127.0.0.1 and a client certificate, as PEM files."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = dt.datetime.now(dt.timezone.utc)

    def cert(name: str, key, issuer_key, issuer_name, *, ca: bool, san: bool):
        builder = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
                   .issuer_name(issuer_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - dt.timedelta(minutes=1)).not_valid_after(now + dt.timedelta(days=1))
                   .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if san:
            builder = builder.add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                                            critical=False)
        return builder.sign(issuer_key, hashes.SHA256())

    def write(name, key, crt):
        (tmp_path / f"{name}.key").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                                 serialization.PrivateFormat.PKCS8,
                                                                 serialization.NoEncryption()))
        (tmp_path / f"{name}.pem").write_bytes(crt.public_bytes(serialization.Encoding.PEM))

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "cxr test CA")])
    write("ca", ca_key, cert("cxr test CA", ca_key, ca_key, ca_name, ca=True, san=False))
    for name in ("server", "client"):
        key = ec.generate_private_key(ec.SECP256R1())
        write(name, key, cert(name, key, ca_key, ca_name, ca=False, san=True))
    return {n: tmp_path / n for n in ("ca.pem", "server.pem", "server.key", "client.pem", "client.key")}


def test_tls_listener_requires_a_certificate_signed_by_its_ca(sqlite_engine, local_lake, listen, tmp_path):
    from cxr.dicom.network import tls_context
    from cxr.dicom.scu import DeliveryError, Peer, echo

    f = _tls_files(tmp_path)
    ln = listen(sqlite_engine, local_lake, dicom_tls_cert=f["server.pem"], dicom_tls_key=f["server.key"],
                dicom_tls_ca=f["ca.pem"])
    peer = Peer("CXR", "127.0.0.1", ln.scp.port)
    client = tls_context(f["client.pem"], f["client.key"], f["ca.pem"], server=False)
    assert echo(peer, calling_ae="SENDER", ssl_context=client, timeout=5) == 0
    with pytest.raises(DeliveryError):  # no client certificate: the handshake fails
        echo(peer, calling_ae="SENDER", ssl_context=tls_context(None, None, f["ca.pem"], server=False), timeout=5)
    with pytest.raises(DeliveryError):  # plain TCP to a TLS port
        echo(peer, calling_ae="SENDER", timeout=5)
    stranger = tmp_path / "other"
    stranger.mkdir()
    g = _tls_files(stranger)  # a client certificate signed by another CA
    with pytest.raises(DeliveryError):
        echo(peer, calling_ae="SENDER", ssl_context=tls_context(g["client.pem"], g["client.key"], f["ca.pem"],
                                                                  server=False), timeout=5)
