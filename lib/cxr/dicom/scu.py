"""DICOM network adapter on pynetdicom: the Storage SCU that sends reports to the PACS, and C-ECHO.

:func:`send` C-STOREs a dataset held in memory to a :class:`Peer`; :func:`echo` C-ECHOes one. A
failure is a :class:`DeliveryError` whose message names the peer and the DICOM reason, never an
attribute value. pynetdicom is configured as for the listener (:func:`~cxr.dicom.network.quiet_pynetdicom`).
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass

from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE
from pynetdicom.association import Association
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]  # generated at import time

from cxr.config import parse_destination
from cxr.dicom.network import STORED, quiet_pynetdicom
from cxr.errors import ConfigError, CxrError


class DeliveryError(CxrError):
    """A dataset could not be delivered; the message names the peer and the reason, never a value."""


@dataclass(frozen=True)
class Peer:
    """A remote application entity: AE title, host and port."""

    ae_title: str
    host: str
    port: int

    @classmethod
    def parse(cls, spec: str, setting: str = "CXR_DICOM_RESULTS_DEST") -> Peer:
        try:
            return cls(*parse_destination(spec))
        except ValueError as exc:
            raise ConfigError(str(exc), setting=setting) from None

    def __str__(self) -> str:
        return f"{self.ae_title}@{self.host}:{self.port}"


def _associate(dest: Peer, calling_ae: str, contexts: list[tuple[str, list[str]]], *, timeout: float,
               ssl_context: ssl.SSLContext | None) -> Association:
    quiet_pynetdicom()
    ae = AE(ae_title=calling_ae)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = timeout
    ae.connection_timeout = timeout
    for abstract, syntaxes in contexts:
        ae.add_requested_context(abstract, syntaxes)
    tls = (ssl_context, dest.host) if ssl_context is not None else None
    assoc = ae.associate(dest.host, dest.port, ae_title=dest.ae_title, tls_args=tls)
    if assoc.is_established:
        return assoc
    if assoc.is_rejected:
        raise DeliveryError(f"{dest} rejected the association")
    raise DeliveryError(f"no association with {dest} (not reachable, or aborted)")


def send(dataset: Dataset, dest: Peer, *, calling_ae: str, timeout: float = 30.0,
         ssl_context: ssl.SSLContext | None = None) -> int:
    """C-STORE ``dataset`` (in memory) to ``dest``; its status, or :class:`DeliveryError` unless stored."""
    sop_class = str(dataset.SOPClassUID)
    assoc = _associate(dest, calling_ae, [(sop_class, [ExplicitVRLittleEndian, ImplicitVRLittleEndian])],
                       timeout=timeout, ssl_context=ssl_context)
    try:
        rsp = assoc.send_c_store(dataset)
    finally:
        if assoc.is_established:
            assoc.release()
    status = int(rsp.Status) if rsp is not None and "Status" in rsp else None
    if status is None:
        raise DeliveryError(f"{dest} gave no C-STORE response (timeout or aborted)")
    if status not in STORED:
        raise DeliveryError(f"{dest} answered C-STORE with status 0x{status:04X}")
    return status


def echo(dest: Peer, *, calling_ae: str, timeout: float = 30.0, ssl_context: ssl.SSLContext | None = None) -> int:
    """C-ECHO ``dest``; its status, or :class:`DeliveryError`."""
    assoc = _associate(dest, calling_ae, [(str(Verification), [ExplicitVRLittleEndian, ImplicitVRLittleEndian])],
                       timeout=timeout, ssl_context=ssl_context)
    try:
        rsp = assoc.send_c_echo()
    finally:
        if assoc.is_established:
            assoc.release()
    if rsp is None or "Status" not in rsp:
        raise DeliveryError(f"{dest} gave no C-ECHO response")
    return int(rsp.Status)
