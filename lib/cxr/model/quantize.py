"""Static int8 quantization of a registry model (QDQ, calibrated on synthetic phantoms), as a new version.

ONNX Runtime's ``quantize_static`` inserts QuantizeLinear/DequantizeLinear pairs around every Conv
(weights int8 per output channel, activations uint8 with ranges calibrated by MinMax on phantoms
that neither training nor the held-out evaluation uses); at load time ONNX Runtime fuses them into
int8 kernels (VNNI on x86). The source version stays in the registry untouched; the new version's
``metadata.json`` says ``"weights": "int8-static"`` and records the calibration, and its card says how
it was made. Measured in ``benchmarks/bench_inference.py`` (figures in docs/benchmarks.md); adopted
only because it loses no mAP@0.5 on the 200 held-out phantoms (the goal allowed 0.01).

onnx + onnxruntime + numpy; no torch.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process

from cxr.errors import InputError
from cxr.model.metadata import ModelMetadata
from cxr.model.onnx_weights import expand_weights
from cxr.model.phantoms import generate_phantom
from cxr.model.preprocess import letterbox
from cxr.model.registry import CARD, METADATA, read_metadata, sha256_file

#: Calibration phantoms' first seed: apart from training's (0 upwards) and evaluation's (10,000,000 upwards).
CALIB_SEED_BASE = 20_000_000


class PhantomCalibration(CalibrationDataReader):
    """``n`` letterboxed phantoms (512 px, like the evaluation's) as the model's input."""

    def __init__(self, meta: ModelMetadata, n: int, seed_base: int = CALIB_SEED_BASE, input_name: str = "image"):
        self._items: Iterator[int] = iter(range(n))
        self.meta, self.seed_base, self.input_name = meta, seed_base, input_name

    def get_next(self) -> dict[str, np.ndarray] | None:
        i = next(self._items, None)
        if i is None:
            return None
        p = generate_phantom(self.seed_base + i, 512, self.meta.classes)
        x, _ = letterbox(p.as_float(), int(self.meta.input.size))
        return {self.input_name: x[None, None].astype(np.float32)}


def quantize_onnx(src_onnx: bytes, dest: Path, meta: ModelMetadata, *, calib_n: int = 64,
                  activation: str = "uint8", method: str = "minmax", seed_base: int = CALIB_SEED_BASE) -> Path:
    """Write the static int8 QDQ graph of ``src_onnx`` (fp32 or int8/fp16-stored weights) to ``dest``."""
    with tempfile.TemporaryDirectory(prefix="cxr-quant-") as tmp:
        fp32, pre = Path(tmp) / "fp32.onnx", Path(tmp) / "pre.onnx"
        fp32.write_bytes(expand_weights(src_onnx))
        quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=True)
        quantize_static(str(pre), str(dest), PhantomCalibration(meta, calib_n, seed_base),
                        quant_format=QuantFormat.QDQ, per_channel=True, weight_type=QuantType.QInt8,
                        activation_type=QuantType.QUInt8 if activation == "uint8" else QuantType.QInt8,
                        calibrate_method={"minmax": CalibrationMethod.MinMax,
                                          "percentile": CalibrationMethod.Percentile,
                                          "entropy": CalibrationMethod.Entropy}[method])
    return dest


def quantize_model(src_dir: Path, version: str, *, calib_n: int = 64,
                   evaluate: Callable[[Path, ModelMetadata], dict] | None = None) -> Path:
    """``models/<name>/<version>/``: the static int8 QDQ copy of ``src_dir`` with its metadata and card.

    ``evaluate(model_file, metadata)`` gives the new version's metrics (the held-out phantoms);
    without it the source's metrics are kept.
    """
    src_dir = Path(src_dir)
    meta = read_metadata(src_dir)
    out = src_dir.parent / version
    if out.exists():
        raise InputError(f"{out} exists: choose another --version")
    out.mkdir(parents=True)
    try:
        onnx_path = quantize_onnx((src_dir / meta.onnx.file).read_bytes(), out / "model.onnx", meta, calib_n=calib_n)
        quant = {"method": "onnxruntime quantize_static, QDQ, per-channel int8 weights, uint8 activations, MinMax",
                 "calibration": f"{calib_n} synthetic phantoms (512 px, seeds {CALIB_SEED_BASE}.."
                                f"{CALIB_SEED_BASE + calib_n - 1})", "from_version": meta.version}
        metrics = evaluate(onnx_path, meta) if evaluate is not None else meta.metrics
        new = meta.model_copy(update={
            "version": version, "created": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "onnx": meta.onnx.model_copy(update={"file": onnx_path.name, "bytes": onnx_path.stat().st_size,
                                                 "sha256": sha256_file(onnx_path), "weights": "int8-static"}),
            "torch": None, "training": {**meta.training, "quantization": quant},
            "metrics": metrics,
            "drift_reference": None,  # the source's scores are not this model's: the caller computes its own
        })
        (out / METADATA).write_text(new.to_json(), encoding="utf-8")
        write_card(src_dir, out, new, quant)  # (the training history stays with the source version)
    except BaseException:
        shutil.rmtree(out, ignore_errors=True)
        raise
    return out


def write_card(src_dir: Path, out: Path, meta: ModelMetadata, quant: dict[str, str]) -> None:
    """The source card, retitled, with the quantization and the new version's evaluation added."""
    card = (src_dir / CARD).read_text(encoding="utf-8") if (src_dir / CARD).is_file() else f"# Model card: {meta.name}\n"
    m = meta.metrics
    nan = float("nan")
    replace = {
        "- ONNX (": f"- ONNX (static int8 QDQ: int8 weights and activations, {(meta.onnx.bytes or 0) / 1e6:.1f} MB) "
                    "exports the raw head outputs; anchors, box decoding, thresholds and class-wise NMS run in numpy "
                    "at serving time.",
        "- mAP@0.5:": f"- mAP@0.5: {m.get('map50', nan):.3f}; mAP@[.5:.95]: {m.get('map', nan):.3f}; "
                      f"sensitivity at 1 FP/image: {m.get('sens_at_1fp', nan):.3f}",
        "- AP@0.5 per class:": "- AP@0.5 per class: " + ", ".join(f"{k} {v:.3f}"
                                                               for k, v in (m.get("ap50_per_class") or {}).items()),
    }
    lines = [next((text for start, text in replace.items() if ln.startswith(start)), ln) for ln in card.splitlines()]
    lines[0] = f"# Model card: {meta.name} {meta.version}"
    lines += ["", "## Quantization",
              f"- Version {meta.version} is {quant['from_version']} statically quantized: {quant['method']}.",
              f"- Calibrated on {quant['calibration']}, apart from training and evaluation seeds.",
              f"- Held-out evaluation of this version: mAP@0.5 {m.get('map50', float('nan')):.4f}, "
              f"mAP@[.5:.95] {m.get('map', float('nan')):.4f}; see docs/benchmarks.md for the latency.", ""]
    (out / CARD).write_text("\n".join(lines), encoding="utf-8")
