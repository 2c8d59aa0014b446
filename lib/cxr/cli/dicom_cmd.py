"""``cxr dicom``: the DICOM listener (C-STORE in, SR back to the PACS), a transaction's SR, C-ECHO."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import typer

dicom = typer.Typer(help="Stage 2 on the DICOM network: receive X-rays from the PACS (C-STORE), return the "
                    "findings as DICOM SR; write a transaction's SR; C-ECHO a peer. Demo model trained on "
                    "synthetic images: not for clinical use.", no_args_is_help=True)


def _log_to_stderr() -> None:
    """One line per association and per instance on stderr (the adapter's lines; no PHI in any)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(message)s"))
    for name, level in (("cxr.dicom", logging.INFO), ("cxr.ingest", logging.WARNING)):
        logger = logging.getLogger(name)
        logger.setLevel(level)
        logger.addHandler(handler)
        logger.propagate = False


@dicom.command("listen")
def listen(
    port: int = typer.Option(None, "--port", help="TCP port (default: CXR_DICOM_PORT, 11112).", show_default=False),
    bind: str = typer.Option(None, "--bind", help="Address to bind (default: CXR_DICOM_BIND, 127.0.0.1).",
                             show_default=False),
) -> None:
    """Run the C-STORE/C-ECHO listener in the foreground until SIGTERM or Ctrl-C.

    Accepts CR, DX and Secondary Capture images from the AE titles in CXR_DICOM_ALLOWED_AES (empty:
    nobody), runs each through the ingest pipeline (validate, de-identify, detect, store) and
    acknowledges it once stored; sends each report as DICOM SR to CXR_DICOM_RESULTS_DEST. Logs one
    line per association and per instance, without patient data. On SIGTERM it stops accepting,
    finishes the instances in flight and exits 0.
    """
    from cxr.config import get_settings
    from cxr.ingest.network import serve
    from cxr.model.predict import load_predictor
    from cxr.stores import db
    from cxr.stores.catalog import Stores

    overrides = {k: v for k, v in (("dicom_port", port), ("dicom_bind", bind)) if v is not None}
    settings = get_settings().model_copy(update=overrides)
    stores = Stores.open(settings)
    db.check_connection(stores.engine)
    db.require_current(stores.engine)
    _ = stores.lake  # a lake that cannot be opened fails now, with its one line, not at the first image
    predictor = load_predictor(settings)
    _log_to_stderr()
    try:
        serve(stores, predictor)
    finally:
        stores.close()


@dicom.command("sr")
def sr_command(
    transaction_id: int = typer.Argument(..., help="A stored transaction (any source: dicom, ingest, dashboard)."),
    out: Path = typer.Argument(..., help="Where to write the DICOM SR (.dcm)."),
) -> None:
    """Write the de-identified DICOM SR (TID 1500 measurement report) of a stored transaction.

    It references the de-identified image in the lake (a PNG/JPEG upload gets a Secondary Capture
    reference made for it) and carries no patient data.
    """
    from cxr.ingest import results
    from cxr.stores import db
    from cxr.stores.catalog import Stores

    stores = Stores.open()
    with db.reading():
        t = results.load_transaction(stores.engine, transaction_id)
        data = results.deidentified_report(stores, t)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_bytes(data)
    tmp.replace(out)
    typer.echo(f"wrote the SR of transaction {t.transaction_id} ({len(t.findings)} finding(s)) to {out}")


@dicom.command("echo")
def echo_command(dest: str = typer.Argument(..., help="AE@host:port, e.g. ORTHANC@127.0.0.1:4242.")) -> None:
    """C-ECHO a DICOM peer with this node's AE title (CXR_DICOM_AE_TITLE) and TLS settings."""
    from cxr.config import get_settings
    from cxr.dicom.network import tls_context
    from cxr.dicom.scu import Peer, echo

    s = get_settings()
    peer = Peer.parse(dest, setting="DEST")
    ctx = tls_context(s.dicom_tls_cert, s.dicom_tls_key, s.dicom_tls_ca, server=False)
    status = echo(peer, calling_ae=s.dicom_ae_title, timeout=s.dicom_timeout_s, ssl_context=ctx)
    typer.echo(f"{peer}: C-ECHO status 0x{status:04X}")
    if status != 0:
        raise typer.Exit(1)


def register(root: typer.Typer) -> None:
    root.add_typer(dicom, name="dicom")
