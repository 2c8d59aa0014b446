"""Export a trained RetinaNet to the registry: raw-head ONNX + metadata + model card (imports torch).

``weights`` storage: ``fp32``; ``fp16`` (weights stored half, cast to float at load); ``int8``
(per-output-channel symmetric weight-only quantization through ``DequantizeLinear``). ONNX Runtime's
own ``quantize_dynamic``/``quantize_static`` also quantize activations, which changes the detector's
outputs; weight-only storage is what keeps the demo artifact under 15 MB with mAP checked.
"""

from __future__ import annotations

import datetime as _dt
import json
from pathlib import Path

import numpy as np

from cxr.model.anchors import feature_sizes
from cxr.model.registry import CARD, METADATA, sha256_file

ONNX_OPSET = 17


def export_onnx(raw_module, size: int, path: Path) -> Path:
    """Export ``RawRetinaNet`` (fp32) for one image (1, 1, size, size): static shapes fold the head's reshapes."""
    import torch

    raw_module = raw_module.eval()
    dummy = torch.rand(1, 1, size, size)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.onnx.export(raw_module, (dummy,), str(path), input_names=["image"],
                      output_names=["cls_logits", "bbox_deltas"], opset_version=ONNX_OPSET, dynamo=False)
    return path


def compress_weights(src: Path, dst: Path, mode: str, min_elements: int = 1024) -> Path:
    """Store large float initializers as fp16 (+Cast) or int8 (+DequantizeLinear, per output channel)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load(str(src))
    graph = model.graph
    new_inits, new_nodes = [], []
    for init in graph.initializer:
        arr = numpy_helper.to_array(init)
        if arr.dtype != np.float32 or arr.size < min_elements or mode == "fp32":
            new_inits.append(init)
            continue
        name = init.name
        if mode == "fp16":
            new_inits.append(numpy_helper.from_array(arr.astype(np.float16), name + "__fp16"))
            new_nodes.append(helper.make_node("Cast", [name + "__fp16"], [name], to=TensorProto.FLOAT))
        elif mode == "int8":
            flat = arr.reshape(arr.shape[0], -1)
            scale = np.maximum(np.abs(flat).max(axis=1), 1e-12) / 127.0
            q = np.clip(np.round(flat / scale[:, None]), -127, 127).astype(np.int8).reshape(arr.shape)
            new_inits += [numpy_helper.from_array(q, name + "__q"),
                          numpy_helper.from_array(scale.astype(np.float32), name + "__scale"),
                          numpy_helper.from_array(np.zeros(arr.shape[0], np.int8), name + "__zp")]
            new_nodes.append(helper.make_node("DequantizeLinear", [name + "__q", name + "__scale", name + "__zp"],
                                              [name], axis=0))
        else:
            raise ValueError(f"unknown weight storage {mode!r}")
    del graph.initializer[:]
    graph.initializer.extend(new_inits)
    nodes = list(graph.node)
    del graph.node[:]
    graph.node.extend(new_nodes + nodes)
    onnx.checker.check_model(model)
    onnx.save(model, str(dst))
    return Path(dst)


def build_metadata(*, name: str, version: str, classes, arch: dict, onnx_path: Path, weights_storage: str,
                   torch_path: Path | None, training: dict, metrics: dict | None) -> dict:
    size = int(arch["input_size"])
    meta = {
        "name": name,
        "version": version,
        "format": "cxr-retinanet-raw/1",
        "created": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "synthetic_training_data": bool(training.get("synthetic", True)),
        "intended_use": "Demonstration and software testing only. NOT FOR CLINICAL USE.",
        "classes": list(classes),
        "input": {"size": size, "channels": 1, "layout": "NCHW", "range": [0.0, 1.0],
                  "resize": "letterbox: keep aspect, longer side = size, top-left, zero pad",
                  "normalization": {"mean": arch.get("mean", 0.5), "std": arch.get("std", 0.25),
                                    "applied": "inside the ONNX graph"}},
        "anchors": {"sizes": arch["anchor_sizes"], "aspect_ratios": arch["aspect_ratios"],
                    "feature_sizes": [list(f) for f in feature_sizes(size, len(arch["anchor_sizes"]))],
                    "order": "torchvision AnchorGenerator: level, y, x, (ratio, scale)"},
        "box_coder": {"weights": [1.0, 1.0, 1.0, 1.0], "clip": "log(1000/16)"},
        "postprocess_defaults": {"score_thr": 0.5, "nms_thr": 0.5, "topk": 1000, "max_det": 100},
        "arch": arch,
        "onnx": {"file": onnx_path.name, "bytes": onnx_path.stat().st_size, "sha256": sha256_file(onnx_path),
                 "opset": ONNX_OPSET, "weights": weights_storage, "outputs": ["cls_logits", "bbox_deltas"]},
        "training": training,
        "metrics": metrics or {},
    }
    if torch_path is not None and torch_path.is_file():
        meta["torch"] = {"file": torch_path.name, "bytes": torch_path.stat().st_size,
                         "sha256": sha256_file(torch_path)}
    return meta


def model_card(meta: dict) -> str:
    """MODEL_CARD.md text for the metadata (states synthetic training and not for clinical use)."""
    m = meta.get("metrics") or {}
    t = meta.get("training") or {}
    synthetic = meta.get("synthetic_training_data", True)
    lines = [
        f"# Model card: {meta['name']} {meta['version']}",
        "",
        "**NOT FOR CLINICAL USE.** " + (
            "This detector was trained only on *synthetic phantom* chest X-rays generated by "
            "`cxr.model.phantoms`; it has never seen a real radiograph and its findings on real images are meaningless."
            if synthetic else "This detector is a research artifact and has not been validated for clinical use."),
        "",
        "## Intended use",
        "Demonstrating and testing the cxr pipeline (ingest, DB, lake, warehouse, mart, dashboard). "
        "Not a medical device; not for diagnosis, triage or any patient care.",
        "",
        "## Model",
        f"- torchvision RetinaNet, backbone {meta['arch']['backbone']} + FPN ({meta['arch']['fpn_channels']} channels), "
        f"trained from scratch (BatchNorm), grayscale input {meta['input']['size']}x{meta['input']['size']} (letterboxed).",
        f"- Classes ({len(meta['classes'])}): {', '.join(meta['classes'])}.",
        f"- ONNX ({meta['onnx']['weights']} weights, {meta['onnx']['bytes'] / 1e6:.1f} MB) exports the raw head outputs; "
        "anchors, box decoding, thresholds and class-wise NMS run in numpy at serving time.",
        "",
        "## Training data",
        f"- {t.get('data', 'synthetic phantoms')}",
        f"- Recipe {t.get('recipe', '?')}: {t.get('steps', '?')} steps, batch {t.get('batch_size', '?')}, "
        f"{t.get('cpu_seconds', 0) / 60:.1f} CPU minutes, {t.get('wall_seconds', 0) / 60:.1f} wall minutes on {t.get('threads', '?')} threads.",
        "",
        "## Evaluation",
    ]
    if m:
        lines += [f"- {m.get('dataset', 'held-out phantoms')}",
                  f"- mAP@0.5: {m.get('map50', float('nan')):.3f}; mAP@[.5:.95]: {m.get('map', float('nan')):.3f}; "
                  f"sensitivity at 1 FP/image: {m.get('sens_at_1fp', float('nan')):.3f}",
                  "- AP@0.5 per class: " + ", ".join(f"{k} {v:.3f}" for k, v in (m.get("ap50_per_class") or {}).items())]
    else:
        lines.append("- not evaluated yet")
    lines += ["", "## Limitations",
              "Synthetic phantoms are simple geometric drawings. Performance on them says nothing about real chest X-rays.", ""]
    return "\n".join(lines)


def write_artifact(model, classes, arch: dict, out_dir: Path, *, name: str, version: str, training: dict,
                   metrics: dict | None = None, weights: str = "fp32", keep_torch: bool = True) -> Path:
    """Write ``out_dir`` = models/<name>/<version>/ with model.onnx, metadata.json, MODEL_CARD.md (+ model.pt)."""
    import torch

    from cxr.model.net import RawRetinaNet

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    raw = RawRetinaNet(model).eval()
    onnx_path = out_dir / "model.onnx"
    fp32_path = out_dir / "model.fp32.onnx"
    export_onnx(raw, int(arch["input_size"]), fp32_path)
    if weights == "fp32":
        fp32_path.replace(onnx_path)
    else:
        compress_weights(fp32_path, onnx_path, weights)
        fp32_path.unlink()
    torch_path = out_dir / "model.pt" if keep_torch else None
    if torch_path is not None:
        torch.save(model.state_dict(), torch_path)
    meta = build_metadata(name=name, version=version, classes=classes, arch=arch, onnx_path=onnx_path,
                          weights_storage=weights, torch_path=torch_path, training=training, metrics=metrics)
    write_metadata(out_dir, meta)
    return out_dir


def write_metadata(out_dir: Path, meta: dict) -> None:
    """(Re)write metadata.json and the model card from it."""
    (Path(out_dir) / METADATA).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    (Path(out_dir) / CARD).write_text(model_card(meta), encoding="utf-8")
