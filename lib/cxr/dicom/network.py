"""DICOM network adapter on pynetdicom: the Storage and Verification SCP (the SCU is :mod:`cxr.dicom.scu`).

:class:`StorageSCP` accepts C-ECHO and C-STORE from the calling AE titles of an :class:`AllowList`
(others are rejected at association: "calling AE title not recognised"). It accepts the image
storage classes cxr reads (:data:`IMAGE_CLASSES`: CR, DX, Secondary Capture) in every transfer
syntax the decoder handles, and every other storage class only to refuse each instance with a
C-STORE failure status, so that a report or a PDF sent on the same association does not end it.
Each received image goes, in memory, to the ``on_store`` callback, whose :class:`Outcome` is the
C-STORE status and the instance's log line.

Patient data never reaches disk or a log here: pynetdicom is configured (:func:`quiet_pynetdicom`)
to keep received datasets in memory (no chunked spooling to temporary files), to log no request
or response identifiers and none of its standard DIMSE event lines; its own warnings pass through
a filter that masks UIDs. The lines this module logs name AE titles, addresses, SOP class and
transfer syntax names, statuses and what the callback says; never an attribute value.
"""

from __future__ import annotations

import logging
import re
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import UID
from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, AllStoragePresentationContexts, _config, evt
from pynetdicom.association import Association
from pynetdicom.dimse_messages import C_STORE_RSP
from pynetdicom.sop_class import (  # type: ignore[attr-defined]  # generated at import time
    ComputedRadiographyImageStorage,
    DigitalXRayImageStorageForPresentation,
    DigitalXRayImageStorageForProcessing,
    SecondaryCaptureImageStorage,
    Verification,
)

from cxr.config import parse_allowed_aes
from cxr.errors import ConfigError
from cxr.model.pixels import decodable_transfer_syntaxes, quiet_pydicom

log = logging.getLogger("cxr.dicom")

#: The storage SOP classes whose instances cxr reads: CR, Digital X-Ray (for presentation and for
#: processing) and Secondary Capture.
IMAGE_CLASSES = frozenset({str(ComputedRadiographyImageStorage), str(DigitalXRayImageStorageForPresentation),
                           str(DigitalXRayImageStorageForProcessing), str(SecondaryCaptureImageStorage)})

# C-STORE statuses (PS3.4 B.2.3 and PS3.7 C).
SUCCESS = 0x0000
OUT_OF_RESOURCES = 0xA700
CANNOT_UNDERSTAND = 0xC000
PROCESSING_FAILURE = 0x0110
SOP_CLASS_NOT_SUPPORTED = 0x0122
#: C-STORE responses a sender counts as stored (success and the warnings of PS3.4 B.2.3).
STORED = frozenset({0x0000, 0xB000, 0xB006, 0xB007})
MAX_PDU = 256 * 1024


@dataclass(frozen=True)
class AllowList:
    """Calling AE titles allowed to associate, each from any host or from one host."""

    entries: tuple[tuple[str, str | None], ...]

    @classmethod
    def parse(cls, spec: str) -> AllowList:
        try:
            return cls(parse_allowed_aes(spec))
        except ValueError as exc:
            raise ConfigError(str(exc), setting="CXR_DICOM_ALLOWED_AES") from None

    def allows(self, ae_title: str, host: str) -> bool:
        title = ae_title.strip()
        return any(title == t and (h is None or h == host) for t, h in self.entries)

    def __str__(self) -> str:
        return ", ".join(t if h is None else f"{t}@{h}" for t, h in self.entries) or "nobody"


@dataclass
class Received:
    """One C-STORE request: the identified dataset (in memory, with a minimal file meta) and where it came from."""

    dataset: Dataset
    encoded: bytes  # the dataset as it was received (never written anywhere)
    sop_class_uid: str
    transfer_syntax: str
    calling_ae: str
    host: str

    @property
    def sop_class_name(self) -> str:
        return UID(self.sop_class_uid).name


@dataclass(frozen=True)
class Outcome:
    """What the ``on_store`` callback answers: the C-STORE status and the rest of the log line."""

    status: int
    note: str


StoreCallback = Callable[[Received], Outcome]


# -- pynetdicom's configuration and logging -------------------------------------------------------
_UID_LIKE = re.compile(r"\b\d+(?:\.\d+){3,}\b")


class _MaskingHandler(logging.Handler):
    """pynetdicom's own warnings and errors, re-logged at INFO as one line with UIDs masked and no
    traceback (what failed is also in cxr's own line: the C-STORE status, the undelivered result)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage().splitlines()[0] if record.getMessage() else ""
        except Exception:  # noqa: BLE001 - a record that cannot be formatted is dropped
            return
        log.info("pynetdicom: %s", _UID_LIKE.sub("<uid>", text)[:200])


_MASKING = _MaskingHandler()


def quiet_pynetdicom() -> None:
    """Datasets stay in memory; no identifiers, dataset dumps or DIMSE summaries in any log."""
    _config.STORE_RECV_CHUNKED_DATASET = False  # True would spool received datasets to temp files
    _config.STORE_SEND_CHUNKED_DATASET = False
    _config.LOG_HANDLER_LEVEL = "none"  # the standard handlers log each DIMSE message, UIDs included
    _config.LOG_REQUEST_IDENTIFIERS = False
    _config.LOG_RESPONSE_IDENTIFIERS = False
    lib = logging.getLogger("pynetdicom")
    lib.setLevel(logging.WARNING)
    lib.propagate = False
    if _MASKING not in lib.handlers:
        lib.addHandler(_MASKING)


# -- TLS --------------------------------------------------------------------------------------------
def tls_context(cert: Path | None, key: Path | None, ca: Path | None, *, server: bool) -> ssl.SSLContext | None:
    """The TLS context of the listener (``server``) or of a delivery; None without a certificate and CA.

    The listener needs a certificate and key; with a CA it also requires a peer certificate signed
    by it. A delivery verifies the destination against the CA (or the system's) and its host name.
    """
    if server and cert is None and key is None:
        if ca is not None:
            raise ConfigError("a CA without a certificate: TLS needs CXR_DICOM_TLS_CERT and CXR_DICOM_TLS_KEY",
                              setting="CXR_DICOM_TLS_CERT")
        return None
    if not server and cert is None and ca is None:
        return None
    if (cert is None) != (key is None):
        raise ConfigError("TLS needs both a certificate and its key", setting="CXR_DICOM_TLS_KEY")
    for path, name in ((cert, "CXR_DICOM_TLS_CERT"), (key, "CXR_DICOM_TLS_KEY"), (ca, "CXR_DICOM_TLS_CA")):
        if path is not None and not Path(path).is_file():
            raise ConfigError(f"no such file: {path}", setting=name)
    purpose = ssl.Purpose.CLIENT_AUTH if server else ssl.Purpose.SERVER_AUTH
    try:
        ctx = ssl.create_default_context(purpose, cafile=str(ca) if ca else None)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        if cert is not None and key is not None:
            ctx.load_cert_chain(str(cert), str(key))
    except (ssl.SSLError, OSError) as exc:
        raise ConfigError(f"cannot load the TLS certificate, key or CA: {exc}", setting="CXR_DICOM_TLS_CERT") from None
    if server and ca is not None:
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def _syntaxes(uids: list[str] | None) -> str:
    return ", ".join(UID(str(u)).name for u in (uids or [])) or "no transfer syntax"


# -- the SCP ----------------------------------------------------------------------------------------
@dataclass
class _AssocStats:
    ae: str
    host: str
    started: float = field(default_factory=time.monotonic)
    instances: int = 0
    stored: int = 0
    failed: int = 0


class StorageSCP:
    """The listener: C-ECHO and C-STORE from allowed AEs, images to ``on_store`` (see the module)."""

    def __init__(self, *, ae_title: str, bind: str, port: int, allowed: AllowList, on_store: StoreCallback,
                 max_associations: int = 8, ssl_context: ssl.SSLContext | None = None,
                 network_timeout: float = 60.0):
        quiet_pynetdicom()
        self.ae_title = ae_title
        self.bind, self.port = bind, port
        self.allowed = allowed
        self.on_store = on_store
        self.ssl_context = ssl_context
        self.ae = AE(ae_title=ae_title)
        self.ae.maximum_associations = max_associations
        self.ae.maximum_pdu_size = MAX_PDU
        self.ae.network_timeout = network_timeout
        self.ae.acse_timeout = 30
        self.ae.dimse_timeout = 60
        # Unknown calling AEs are rejected twice over: by pynetdicom's list and by _on_requested
        # (which also checks the host). An empty allow list refuses everyone in _on_requested.
        self.ae.require_calling_aet = sorted({t for t, _ in allowed.entries}) or ["CXR-REFUSES-ALL"]
        syntaxes = list(decodable_transfer_syntaxes())
        for cx in AllStoragePresentationContexts:
            uid = str(cx.abstract_syntax)
            self.ae.add_supported_context(uid, syntaxes if uid in IMAGE_CLASSES else ALL_TRANSFER_SYNTAXES)
        self.ae.add_supported_context(Verification)
        self._server = None
        self._stats: dict[int, _AssocStats] = {}
        self._lock = threading.Lock()
        self._pending: dict[int, int] = {}  # association -> C-STOREs received and not yet answered
        self._answered = threading.Condition(self._lock)

    # lifecycle
    def start(self) -> None:
        """Listen (returns at once; associations run in their own threads)."""
        handlers = [(evt.EVT_REQUESTED, self._on_requested), (evt.EVT_ESTABLISHED, self._on_established),
                    (evt.EVT_RELEASED, self._on_closed), (evt.EVT_ABORTED, self._on_closed),
                    (evt.EVT_C_ECHO, lambda event: SUCCESS), (evt.EVT_C_STORE, self._on_store),
                    (evt.EVT_DIMSE_SENT, self._on_sent)]
        try:
            self._server = self.ae.start_server((self.bind, self.port), block=False, evt_handlers=handlers,
                                                ssl_context=self.ssl_context)
        except OSError as exc:
            raise ConfigError(f"cannot listen on {self.bind}:{self.port}: {exc.strerror or exc}",
                              setting="CXR_DICOM_PORT") from None
        self.port = int(self._server.server_address[1])

    def stop_accepting(self) -> None:
        """Stop accepting associations; those already open go on."""
        if self._server is not None:
            self._server.shutdown()
            self._server = None

    def close(self) -> None:
        """Stop listening and abort every open association."""
        self.stop_accepting()
        for assoc in list(self.ae.active_associations):
            assoc.abort()

    @property
    def open_associations(self) -> int:
        return len(self.ae.active_associations)

    @property
    def pending(self) -> int:
        """C-STORE requests received and not answered yet (processing, or waiting for a worker)."""
        with self._lock:
            return sum(self._pending.values())

    def wait_answered(self, timeout: float | None = None) -> bool:
        """Wait until every C-STORE received has been answered (its response sent); False on timeout."""
        with self._answered:
            return self._answered.wait_for(lambda: not any(self._pending.values()), timeout)

    # event handlers (each runs in the association's thread; none may raise)
    def _on_requested(self, event: evt.Event) -> None:
        assoc: Association = event.assoc
        calling = str(assoc.requestor.primitive.calling_ae_title or "").strip()
        host = str(assoc.requestor.address)
        try:
            allowed = self.allowed.allows(calling, host)
        except Exception:  # noqa: BLE001 - fail closed
            allowed = False
        if not allowed:
            assoc.acse.send_reject(0x01, 0x01, 0x03)  # rejected-permanent, service user, calling AE not recognised
            log.warning("association from %s@%s refused: calling AE title not allowed (CXR_DICOM_ALLOWED_AES: %s)",
                        calling, host, self.allowed)
            assoc.kill()

    def _on_established(self, event: evt.Event) -> None:
        assoc: Association = event.assoc
        stats = _AssocStats(str(assoc.requestor.ae_title).strip(), str(assoc.requestor.address))
        with self._lock:
            self._stats[id(assoc)] = stats
        refused = sorted({f"{UID(str(cx.abstract_syntax)).name} in {_syntaxes(cx.transfer_syntax)}"
                          for cx in assoc.rejected_contexts})
        if refused:
            log.info("association from %s@%s: %d presentation context(s) refused (a SOP class not served, or a "
                     "transfer syntax without a decoder): %s", stats.ae, stats.host, len(assoc.rejected_contexts),
                     "; ".join(refused[:10]))

    def _on_sent(self, event: evt.Event) -> None:
        if isinstance(event.message, C_STORE_RSP):
            with self._answered:
                key = id(event.assoc)
                self._pending[key] = max(0, self._pending.get(key, 0) - 1)
                self._answered.notify_all()

    def _on_closed(self, event: evt.Event) -> None:
        with self._answered:
            self._pending.pop(id(event.assoc), None)  # a peer that aborted gets no more answers
            self._answered.notify_all()
            stats = self._stats.pop(id(event.assoc), None)
        if stats is None:
            return
        how = "released" if event.event == evt.EVT_RELEASED else "aborted"
        log.info("association from %s@%s %s after %.1f s: %d instance(s), %d stored, %d failed",
                 stats.ae, stats.host, how, time.monotonic() - stats.started, stats.instances, stats.stored,
                 stats.failed)

    def _on_store(self, event: evt.Event) -> int:
        t0 = time.monotonic()
        with self._lock:
            self._pending[id(event.assoc)] = self._pending.get(id(event.assoc), 0) + 1
        req = event.request
        sop_class = str(req.AffectedSOPClassUID)
        calling = str(event.assoc.requestor.ae_title).strip()
        host = str(event.assoc.requestor.address)
        syntax = str(event.context.transfer_syntax)
        outcome = self._answer(event, sop_class, syntax, calling, host)
        with self._lock:
            stats = self._stats.get(id(event.assoc))
            if stats is not None:
                stats.instances += 1
                stats.stored += outcome.status in STORED
                stats.failed += outcome.status not in STORED
        level = logging.INFO if outcome.status in STORED else logging.WARNING
        log.log(level, "instance from %s@%s: %s, %s -> status 0x%04X %s (%.2f s)", calling, host, UID(sop_class).name,
                UID(syntax).name, outcome.status, outcome.note, time.monotonic() - t0)
        return outcome.status

    def _answer(self, event: evt.Event, sop_class: str, syntax: str, calling: str, host: str) -> Outcome:
        """The outcome of one C-STORE: refused by class, unreadable, or what ``on_store`` says."""
        if sop_class not in IMAGE_CLASSES:
            return Outcome(SOP_CLASS_NOT_SUPPORTED, f"refused: {UID(sop_class).name} is not an image cxr reads "
                                                    "(CR, DX, Secondary Capture)")
        try:
            received = self._received(event, sop_class, syntax, calling, host)
        except Exception as exc:  # noqa: BLE001 - pydicom raises many types for a garbled dataset
            return Outcome(CANNOT_UNDERSTAND, f"refused: unreadable dataset ({type(exc).__name__})")
        try:
            return self.on_store(received)
        except Exception as exc:  # noqa: BLE001 - a bug must not kill the association; the type is logged
            return Outcome(PROCESSING_FAILURE, f"failed: unexpected {type(exc).__name__}")

    @staticmethod
    def _received(event: evt.Event, sop_class: str, syntax: str, calling: str, host: str) -> Received:
        encoded = event.encoded_dataset(include_meta=False)
        with quiet_pydicom():
            ds = event.dataset
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = sop_class
        meta.MediaStorageSOPInstanceUID = str(event.request.AffectedSOPInstanceUID)
        meta.TransferSyntaxUID = syntax
        ds.file_meta = meta
        return Received(ds, encoded, sop_class, syntax, calling, host)
