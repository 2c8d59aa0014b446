"""Stage 2 on the DICOM network: ``cxr dicom listen`` receives X-rays from the PACS, returns SRs.

Wiring only; the parts live elsewhere: the SCP in :mod:`cxr.dicom.network`, the SCU in
:mod:`cxr.dicom.scu`, the one
per-image path (:func:`~cxr.ingest.decode.decode_received`, :func:`~cxr.ingest.pipeline.detect`,
:func:`~cxr.ingest.pipeline.store_detected`) and the reports (:mod:`cxr.ingest.results`).

Each received image (:class:`Receiver`):

1. waits at most ``CXR_DICOM_BUSY_WAIT_S`` for one of ``CXR_DICOM_WORKERS`` workers, else the
   answer is 0xA700 (out of resources): nothing queues without bound, and the sender retries;
2. is decoded and de-identified in memory (an identified copy of its header, without pixels, stays
   in memory for the report to the PACS), detected and stored like an upload, ``source='dicom'``,
   under the run id ``dicom-<model version>`` with ``resume``: the same instance sent again finds its
   transaction and stores nothing new;
3. gets its de-identified SR in the lake, linked from the transaction;
4. is acknowledged (0x0000) only then. A decoding refusal answers 0xC000 with the reason in the
   log; a store that fails answers 0x0110, so the sender keeps the image and retries;
5. its identified SR goes to :class:`Delivery`, which sends it to ``CXR_DICOM_RESULTS_DEST`` with
   retries and back-off; an SR still undelivered is recorded on its transaction
   (``sr_status='failed'``, ``sr_error``) and shows in the pipeline report. Sending the image again
   delivers it again. A lateral view (stored, not detected) gets no report.

:func:`serve` runs the listener until SIGTERM/SIGINT (or ``stop``), then stops accepting, finishes
the instances in flight, aborts idle associations and records what could not be delivered.
"""

from __future__ import annotations

import logging
import queue
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from pydicom.dataset import Dataset
from sqlalchemy import update
from sqlalchemy.exc import SQLAlchemyError

from cxr.config import Settings
from cxr.dicom.network import (
    CANNOT_UNDERSTAND,
    OUT_OF_RESOURCES,
    PROCESSING_FAILURE,
    SUCCESS,
    AllowList,
    Outcome,
    Received,
    StorageSCP,
    tls_context,
)
from cxr.dicom.scu import DeliveryError, Peer, send
from cxr.dicom.sr import header_of
from cxr.errors import CxrError, InputError
from cxr.ingest import results
from cxr.ingest.decode import decode_received
from cxr.ingest.pipeline import detect, store_detected
from cxr.model.predict import Predictor
from cxr.stores.catalog import Stores
from cxr.stores.schema import transaction

log = logging.getLogger("cxr.dicom")


def run_id_for(predictor: Predictor) -> str:
    """The run id of the listener's transactions: one per model version (so a re-send is a resume)."""
    return f"dicom-{predictor.model_version}"[:64]


class Delivery:
    """Identified SRs waiting for the PACS, in memory, sent with retries and back-off."""

    def __init__(self, stores: Stores, dest: Peer, settings: Settings, *, sender: Callable[..., int] = send):
        self.stores, self.dest, self.settings = stores, dest, settings
        self.sender = sender
        self.ssl_context = tls_context(settings.dicom_tls_cert, settings.dicom_tls_key, settings.dicom_tls_ca,
                                       server=False)
        self.queue: queue.Queue[tuple[int, Dataset] | None] = queue.Queue(maxsize=settings.dicom_delivery_queue)
        self.closing = threading.Event()
        self.thread = threading.Thread(target=self._run, name="cxr-sr-delivery", daemon=True)
        self.thread.start()

    def submit(self, transaction_id: int, sr: Dataset) -> None:
        """Queue one identified SR (its transaction is marked pending); a full queue records a failure."""
        results.set_delivery(self.stores.engine, transaction_id, "pending")
        try:
            self.queue.put_nowait((transaction_id, sr))
        except queue.Full:
            self._failed(transaction_id, f"{self.dest}: not attempted, {self.queue.maxsize} results already "
                                         "waiting (CXR_DICOM_DELIVERY_QUEUE)")

    def _failed(self, transaction_id: int, why: str) -> None:
        log.warning("result of transaction %d undelivered: %s; send the image again to deliver it",
                    transaction_id, why)
        try:
            results.set_delivery(self.stores.engine, transaction_id, "failed", why)
        except SQLAlchemyError as exc:  # the DB is down too: the log line is all there is
            log.error("could not record the undelivered result of transaction %d (%s)", transaction_id,
                      type(exc).__name__)

    def _run(self) -> None:
        while True:
            item = self.queue.get()
            if item is None:
                return
            transaction_id, sr = item
            if self.closing.is_set():
                self._failed(transaction_id, f"{self.dest}: not attempted, the listener stopped")
                continue
            self._deliver(transaction_id, sr)

    def _deliver(self, transaction_id: int, sr: Dataset) -> None:
        s = self.settings
        wait, error = s.dicom_send_backoff_s, ""
        for attempt in range(1, s.dicom_send_attempts + 1):
            try:
                self.sender(sr, self.dest, calling_ae=s.dicom_ae_title, timeout=s.dicom_timeout_s,
                            ssl_context=self.ssl_context)
            except (DeliveryError, OSError) as exc:
                error = str(exc) if isinstance(exc, DeliveryError) else f"{self.dest}: {type(exc).__name__}"
                if attempt < s.dicom_send_attempts and not self.closing.wait(wait):
                    wait *= 2
                    continue
                break
            try:
                results.set_delivery(self.stores.engine, transaction_id, "delivered")
            except SQLAlchemyError as exc:
                log.error("result of transaction %d delivered, but not recorded (%s)", transaction_id,
                          type(exc).__name__)
            log.info("result of transaction %d delivered to %s (attempt %d)", transaction_id, self.dest, attempt)
            return
        self._failed(transaction_id, f"{error} after {attempt} attempt(s)")

    def close(self) -> None:
        """Finish the delivery in progress; record the ones still waiting as undelivered."""
        self.closing.set()
        self.queue.put(None)
        self.thread.join()


class Receiver:
    """The C-STORE callback: one received image through the ingest path (see the module)."""

    def __init__(self, stores: Stores, predictor: Predictor, delivery: Delivery | None = None):
        self.stores, self.predictor, self.delivery = stores, predictor, delivery
        self.settings = stores.settings
        self.run_id = run_id_for(predictor)
        self.slots = threading.BoundedSemaphore(self.settings.dicom_workers)
        self.stopping = threading.Event()

    def __call__(self, received: Received) -> Outcome:
        if self.stopping.is_set():
            return Outcome(OUT_OF_RESOURCES, "refused: the listener is stopping; send it again later")
        if not self.slots.acquire(timeout=self.settings.dicom_busy_wait_s):
            return Outcome(OUT_OF_RESOURCES, f"refused: all {self.settings.dicom_workers} workers busy for "
                                             f"{self.settings.dicom_busy_wait_s:g} s (CXR_DICOM_WORKERS)")
        try:
            return self._process(received)
        finally:
            self.slots.release()

    def _process(self, received: Received) -> Outcome:
        s = self.settings
        identified = None
        try:
            if self.delivery is not None:
                identified = header_of(received.dataset)  # identified, in memory, for the PACS's report
            upload = decode_received(received.dataset, s, original=received.encoded)
        except InputError as exc:
            return Outcome(CANNOT_UNDERSTAND, f"refused: {exc}")
        except Exception as exc:  # noqa: BLE001 - pydicom parses lazily: a garbled element raises on access
            return Outcome(CANNOT_UNDERSTAND, f"refused: unreadable dataset ({type(exc).__name__})")
        finally:
            received.dataset = Dataset()  # the received copy (now de-identified) is not needed any more
        detected = detect(upload, self.predictor, score_thr=s.score_thr, nms_thr=s.nms_thr)
        try:
            res = store_detected(self.stores, detected, score_thr=s.score_thr, nms_thr=s.nms_thr,
                                 model_version=self.predictor.model_version, run_id=self.run_id, source="dicom",
                                 resume=True)
            stored = results.load_transaction(self.stores.engine, res.transaction_id)
            if detected.skip_reason is None:
                results.store_report(self.stores, stored,
                                     results.deidentified_report(self.stores, stored, stored_bytes=upload.stored_bytes))
        except (CxrError, SQLAlchemyError, OSError) as exc:
            return Outcome(PROCESSING_FAILURE, f"failed: not stored ({type(exc).__name__}: the DB or the lake); "
                                               "the sender keeps the image")
        except Exception as exc:  # noqa: BLE001 - boto3/botocore raise their own types for a lake that fails
            return Outcome(PROCESSING_FAILURE, f"failed: not stored ({type(exc).__name__}); the sender keeps the image")
        note = (f"stored transaction {res.transaction_id}" + ("" if res.created_transaction else " (already stored)")
                + (f", not analysed: {detected.skip_reason}" if detected.skip_reason else f", {res.n_boxes} box(es)")
                + "".join(f"; warning: {w}" for w in upload.warnings))
        if self.delivery is not None and identified is not None and detected.skip_reason is None:
            try:
                self.delivery.submit(res.transaction_id, results.identified_report(s, stored, identified))
            except (CxrError, SQLAlchemyError) as exc:
                note += f"; result not queued ({type(exc).__name__})"
        return Outcome(SUCCESS, note)


@dataclass
class Listener:
    """A running listener: the SCP, the receiver, the delivery (for tests and ``serve``)."""

    scp: StorageSCP
    receiver: Receiver
    delivery: Delivery | None

    def stop(self, grace_s: float = 120.0) -> None:
        """Stop accepting, finish the instances in flight, abort idle associations, close the delivery."""
        self.scp.stop_accepting()
        self.receiver.stopping.set()  # instances that arrive from now on are answered 0xA700
        if not self.scp.wait_answered(grace_s):  # those in flight are stored and acknowledged first
            log.warning("instances still in flight after %.0f s; aborting", grace_s)
        self.scp.close()
        if self.delivery is not None:
            self.delivery.close()


def start_listener(stores: Stores, predictor: Predictor) -> Listener:
    """Start the SCP for ``stores.settings`` (returns at once)."""
    s = stores.settings
    allowed = AllowList.parse(s.dicom_allowed_aes)
    dest = Peer.parse(s.dicom_results_dest) if s.dicom_results_dest else None
    server_tls = tls_context(s.dicom_tls_cert, s.dicom_tls_key, s.dicom_tls_ca, server=True)
    _forget_pending(stores)
    delivery = Delivery(stores, dest, s) if dest is not None else None
    receiver = Receiver(stores, predictor, delivery)
    scp = StorageSCP(ae_title=s.dicom_ae_title, bind=s.dicom_bind, port=s.dicom_port, allowed=allowed,
                     on_store=receiver, max_associations=s.dicom_max_associations, ssl_context=server_tls)
    scp.start()
    if not allowed.entries:
        log.warning("CXR_DICOM_ALLOWED_AES is empty: every association will be refused")
    log.info("listening as %s on %s:%d (TLS %s); allowed: %s; results to %s; model %s %s; %d worker(s)",
             s.dicom_ae_title, s.dicom_bind, scp.port, "on" if server_tls else "off", allowed, dest or "nowhere "
             "(CXR_DICOM_RESULTS_DEST unset)", predictor.model_name, predictor.model_version, s.dicom_workers)
    return Listener(scp, receiver, delivery)


def _forget_pending(stores: Stores) -> None:
    """Results a previous listener had queued died with it: record them as undelivered (one listener per DB)."""
    with stores.engine.begin() as conn:
        n = conn.execute(update(transaction).where(transaction.c.sr_status == "pending")
                         .values(sr_status="failed", sr_error="not delivered: the listener stopped before sending it")
                         ).rowcount
    if n:
        log.warning("%d result(s) queued by a previous listener were never delivered; recorded as undelivered", n)


def serve(stores: Stores, predictor: Predictor, *, stop: threading.Event | None = None) -> None:
    """Run the listener in the foreground until SIGTERM or SIGINT (or ``stop`` is set)."""
    stop = stop or threading.Event()
    listener = start_listener(stores, predictor)
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda _signum, _frame: stop.set())
    try:
        while not stop.wait(1.0):
            pass
    finally:
        t0 = time.monotonic()
        log.info("stopping: no new associations; finishing the instances in flight")
        listener.stop()
        log.info("stopped in %.1f s", time.monotonic() - t0)
