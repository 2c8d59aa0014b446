"""``cxr dicom listen`` as a process: a clean stop on SIGTERM, and a SIGKILL in the middle of an association."""

from __future__ import annotations

import io
import os
import threading
import time
from pathlib import Path

import pydicom
import pytest
from dicom_helpers import MODELS, ListenerProcess, counts, free_port, phantom_dataset, variants
from sqlalchemy import select

from cxr.dicom.deid import replace_uid
from cxr.stores import db
from cxr.stores.lake import LocalLake
from cxr.stores.schema import image, transaction

pytestmark = pytest.mark.integration
KEY = "test-deid-key-for-the-crash-test"


def _env(tmp_path) -> dict[str, str]:
    (tmp_path / "spool").mkdir(exist_ok=True)
    return {**os.environ, "CXR_DATA_DIR": str(tmp_path / "var"), "CXR_MODELS_DIR": str(MODELS),
            "CXR_DICOM_PORT": str(free_port()), "CXR_DICOM_ALLOWED_AES": "SENDER@127.0.0.1,STORESCU@127.0.0.1",
            "CXR_DEID_KEY": KEY, "TMPDIR": str(tmp_path / "spool"), "CXR_DICOM_WORKERS": "1"}


def _migrated(tmp_path):
    engine = db.make_engine(f"sqlite:///{tmp_path / 'var' / 'cxr.db'}")
    db.upgrade(engine)
    return engine, LocalLake(tmp_path / "var" / "lake")


class Sender(threading.Thread):
    """C-STOREs ``datasets`` on one association, recording each status as it comes (stops at an abort)."""

    def __init__(self, port: int, datasets):
        super().__init__(daemon=True)
        self.port, self.datasets = port, datasets
        self.statuses: list[int] = []
        self.error: str | None = None

    def run(self) -> None:
        from pynetdicom import AE

        ae = AE(ae_title="SENDER")
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 20  # a dead listener is noticed soon
        ae.add_requested_context(str(self.datasets[0].SOPClassUID), [str(self.datasets[0].file_meta.TransferSyntaxUID)])
        assoc = ae.associate("127.0.0.1", self.port, ae_title="CXR")
        if not assoc.is_established:
            self.error = "not established"
            return
        for ds in self.datasets:
            if not assoc.is_established:
                break
            rsp = assoc.send_c_store(ds)
            if rsp is None or "Status" not in rsp:
                break
            self.statuses.append(int(rsp.Status))
        if assoc.is_established:
            assoc.release()

    def wait_acks(self, n: int, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while len(self.statuses) < n and time.monotonic() < deadline and self.is_alive():
            time.sleep(0.02)
        assert len(self.statuses) >= n, (self.statuses, self.error)


def test_sigterm_finishes_the_instances_in_flight_and_exits_cleanly(tmp_path):
    engine, _ = _migrated(tmp_path)
    listener = ListenerProcess(_env(tmp_path), tmp_path / "listen.log", tmp_path).start()
    # Two senders and one worker: while one instance is processed the other waits for the worker, so
    # instances are in flight whenever the signal comes.
    big = variants(phantom_dataset(200, size=2048), 16)
    senders = [Sender(listener.port, big[:8]), Sender(listener.port, big[8:])]
    for sender in senders:
        sender.start()
    try:
        senders[0].wait_acks(2)
        status = Path(f"/proc/{listener.proc.pid}/status").read_text()
        peak_mb = int(next(x.split()[1] for x in status.splitlines() if x.startswith("VmHWM:"))) // 1024
        assert peak_mb < 1500, peak_mb  # bounded: 2 workers, one dataset per association (about 0.9 GB measured)
        assert listener.terminate(timeout=120) == 0
    finally:
        listener.kill()
    for sender in senders:
        sender.join(60)
    statuses = [s for sender in senders for s in sender.statuses]
    for sender in senders:  # each: acknowledged, then "out of resources" once the listener stops
        n = sender.statuses.count(0x0000)
        assert sender.statuses == [0x0000] * n + [0xA700] * (len(sender.statuses) - n), sender.statuses
    assert len(statuses) < 16 and counts(engine)["image"] == statuses.count(0x0000)
    log = listener.text()
    assert "stopping: no new associations; finishing the instances in flight" in log and "stopped in" in log
    after = log.split("stopping: no new associations")[1]
    assert "-> status 0x0000" in after  # an instance in flight when SIGTERM came was finished and acknowledged
    assert log.count("association from SENDER@127.0.0.1") == 2 and "Traceback" not in log
    spooled = {f.name: f.read_bytes() for f in (tmp_path / "spool").rglob("*") if f.is_file()}
    assert set(spooled) <= {".ses"}  # onnxruntime's session id file (a time and a UUID); no dataset spooled
    assert not any(b"DICM" in blob or b"PID" in blob for blob in spooled.values())


def test_sigkill_mid_association_leaves_nothing_half_stored_and_loses_no_acknowledged_instance(tmp_path):
    engine, lake = _migrated(tmp_path)
    env = _env(tmp_path)
    datasets = variants(phantom_dataset(300, size=1024), 10)
    listener = ListenerProcess(env, tmp_path / "listen.log", tmp_path).start()
    sender = Sender(listener.port, datasets)
    sender.start()
    try:
        sender.wait_acks(3)
    finally:
        listener.kill()  # SIGKILL while the 4th instance is on its way or being stored
    sender.join(60)
    acked = [ds for ds, status in zip(datasets, sender.statuses) if status == 0x0000]
    assert len(acked) >= 3 and len(sender.statuses) < len(datasets)

    def check_store() -> set[str]:
        with engine.connect() as conn:
            rows = conn.execute(select(image.c.folder, image.c.image_file, image.c.sha256)).all()
            sr_keys = conn.execute(select(transaction.c.sr_key).where(transaction.c.sr_key.is_not(None))).scalars().all()
        for r in rows:  # no row points to a missing object
            assert lake.exists(f"{r.folder}/{r.image_file}") and lake.exists(f"renditions/{r.sha256[:2]}/{r.sha256}.png")
        assert all(lake.exists(k) for k in sr_keys)
        return {str(pydicom.dcmread(io.BytesIO(lake.get(f"{r.folder}/{r.image_file}")), stop_before_pixels=True)
                    .SOPInstanceUID) for r in rows}

    stored_uids = check_store()
    for ds in acked:  # every acknowledged instance is in the store
        assert replace_uid(str(ds.SOPInstanceUID), KEY.encode()) in stored_uids
    with engine.connect() as conn:  # a transaction for every stored image, none twice
        assert conn.execute(select(transaction.c.image_id)).scalars().all() == sorted(
            conn.execute(select(image.c.image_id)).scalars().all())

    listener = ListenerProcess(env, tmp_path / "listen2.log", tmp_path).start()
    try:
        resend = Sender(listener.port, datasets)
        resend.start()
        resend.join(300)
        assert resend.statuses == [0x0000] * len(datasets)
    finally:
        listener.terminate()
    assert len(check_store()) == len(datasets) and counts(engine)["transaction"] == len(datasets)
