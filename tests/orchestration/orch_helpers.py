"""Helpers for the orchestration tests: tiny notebooks, seeded stores, the Airflow environment."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
AIRFLOW_VENV = REPO / ".venv-airflow"
AIRFLOW_SH = REPO / "scripts" / "airflow.sh"


def write_notebook(path: Path, parameters: str, *cells: str) -> Path:
    """A notebook with a ``parameters`` cell and code cells, on kernel ``cxr`` (no outputs)."""
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook

    p = new_code_cell(parameters)
    p.metadata["tags"] = ["parameters"]
    nb = new_notebook(cells=[p, *(new_code_cell(c) for c in cells)],
                      metadata={"kernelspec": {"name": "cxr", "display_name": "cxr", "language": "python"}})
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


def outputs_text(nb: dict) -> str:
    """Every text/plain, text/markdown and stream output of a notebook, joined."""
    out = []
    for cell in nb["cells"]:
        for o in cell.get("outputs", []):
            data = o.get("data", {})
            for kind in ("text/plain", "text/markdown", "text/html"):
                if kind in data:
                    out.append("".join(data[kind]) if isinstance(data[kind], list) else data[kind])
            if "text" in o:
                out.append("".join(o["text"]) if isinstance(o["text"], list) else o["text"])
            if o.get("output_type") == "error":
                out.append(f"ERROR {o.get('ename')}: {o.get('evalue')}")
    return "\n".join(out)


def seed_predictions(engine, lake, settings, n: int = 3, *, run_id: str = "test-seed") -> list:
    """Store ``n`` phantom PNGs with their true boxes as predictions, as the ingest stage does."""
    import numpy as np

    from cxr.ingest.decode import decode_upload
    from cxr.ingest.pipeline import store_prediction
    from cxr.model.phantoms import generate_phantom, write_png
    from cxr.model.postprocess import Detections

    results = []
    for i in range(n):
        ph = generate_phantom(100 + i, size=128)
        buf = Path(settings.data_dir) / f"seed-{i}.png"
        buf.parent.mkdir(parents=True, exist_ok=True)
        write_png(ph, buf)
        upload = decode_upload(buf.name, buf.read_bytes(), settings)
        labels = np.asarray(ph.labels, np.int64)
        det = Detections(ph.boxes, np.full(len(labels), 0.9, np.float32), labels,
                         [ph.class_names[k] for k in labels])
        results.append(store_prediction(engine, lake, upload, det, score_thr=0.5, nms_thr=0.5,
                                        model_version="test-1", run_id=run_id))
    return results


def airflow(*args: str, env: dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess:
    """``scripts/airflow.sh ARGS`` (Airflow's venv) with ``env``; output captured as text."""
    return subprocess.run(["bash", str(AIRFLOW_SH), *args], env=env, capture_output=True, text=True,
                          timeout=timeout, cwd=REPO)


def airflow_python(code: str, *, env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess:
    """Run ``code`` with the Airflow venv's Python in the repository (dags/ on sys.path)."""
    full = {**env, "PYTHONPATH": str(REPO / "dags")}
    return subprocess.run([str(AIRFLOW_VENV / "bin" / "python"), "-c", code], env=full, capture_output=True,
                          text=True, timeout=timeout, cwd=REPO)


def load_json_line(stdout: str) -> dict:
    """The last line of ``stdout`` that parses as a JSON object."""
    for line in reversed(stdout.strip().splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise AssertionError(f"no JSON line in output:\n{stdout[-2000:]}")


def base_env(tmp: Path) -> dict[str, str]:
    """This test's environment plus a private AIRFLOW_HOME (the metadata DB is migrated once)."""
    return {**os.environ, "AIRFLOW_HOME": str(tmp)}

