"""ONNX weight storage (onnx + numpy, no torch): compress large float weights for the registry,
and expand them back to float32 when a model is loaded for serving.

``fp16``: weights stored half, followed by ``Cast`` to float. ``int8``: per-output-channel symmetric
weight-only quantization followed by ``DequantizeLinear``. ONNX Runtime's ``quantize_dynamic`` /
``quantize_static`` also quantize activations, which changes the detector's outputs (and measured
slower here, see docs/benchmarks.md); weight-only storage keeps the committed demo artifact under
15 MB with its mAP checked. At load time :func:`expand_weights` folds the ``Cast``/``DequantizeLinear``
back into float32 initializers, so a compressed model runs exactly as fast as the fp32 one.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

SUFFIXES = {"fp16": "__fp16", "int8": "__q"}


def compress_weights(src: Path, dst: Path, mode: str, min_elements: int = 1024) -> Path:
    """Store float initializers with >= ``min_elements`` values as fp16 (+Cast) or int8 (+DequantizeLinear)."""
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


def expand_weights(model_bytes: bytes) -> bytes:
    """Fold weight ``Cast``/``DequantizeLinear`` nodes on initializers back into float32 initializers."""
    model = onnx.load_from_string(model_bytes)
    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    folded: dict[str, np.ndarray] = {}
    keep_nodes = []
    for node in graph.node:
        if node.op_type == "Cast" and node.input[0] in inits and node.input[0].endswith("__fp16"):
            folded[node.output[0]] = numpy_helper.to_array(inits[node.input[0]]).astype(np.float32)
        elif node.op_type == "DequantizeLinear" and all(i in inits for i in node.input) and node.input[0].endswith("__q"):
            q = numpy_helper.to_array(inits[node.input[0]]).astype(np.float32)
            scale = numpy_helper.to_array(inits[node.input[1]])
            zp = numpy_helper.to_array(inits[node.input[2]]).astype(np.float32)
            shape = (-1,) + (1,) * (q.ndim - 1)
            folded[node.output[0]] = (q - zp.reshape(shape)) * scale.reshape(shape)
        else:
            keep_nodes.append(node)
    if not folded:
        return model_bytes
    used = {i for n in keep_nodes for i in n.input}
    new_inits = [i for i in graph.initializer if i.name in used]
    new_inits += [numpy_helper.from_array(a.astype(np.float32), name) for name, a in folded.items()]
    del graph.initializer[:]
    graph.initializer.extend(new_inits)
    del graph.node[:]
    graph.node.extend(keep_nodes)
    return model.SerializeToString()
