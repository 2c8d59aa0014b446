"""Predictors: load a registry model once, run it on 2-D float images, post-process in numpy.

Backends: ``onnx`` (default, ONNX Runtime + numpy; never imports torch) and ``torch`` (the same
weights in eager PyTorch, from ``model.pt`` beside ``model.onnx``; for comparisons and the training
notebook). The seed's Detectron2 backend is not provided: detectron2 does not install from PyPI
(it builds against a matching torch from source), so no path here could run it or be tested; a
Detectron2 model is served by exporting it to this registry's ONNX format instead.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from pathlib import Path

import numpy as np

import onnxruntime as ort

from cxr.config import Settings, get_settings
from cxr.errors import ConfigError, InputError
from cxr.model.anchors import anchors_from_metadata
from cxr.model.metadata import ModelMetadata
from cxr.model.onnx_weights import expand_weights
from cxr.model.postprocess import Detections, RawOutput, postprocess
from cxr.model.preprocess import check_image, letterbox
from cxr.model.registry import read_card, read_metadata, resolve_model_dir, verify_file

__all__ = ["Predictor", "OnnxPredictor", "load_predictor", "clear_cache", "BACKENDS"]

BACKENDS = ("onnx", "torch")
_CACHE: dict[tuple[object, ...], Predictor] = {}
_LOCK = threading.Lock()


class Predictor:
    """A loaded model. ``infer`` is the expensive part; ``postprocess`` applies run-time knobs cheaply."""

    backend = "base"

    def __init__(self, model_dir: Path, meta: ModelMetadata):
        self.model_dir = Path(model_dir)
        self.metadata = meta
        self.classes: tuple[str, ...] = tuple(meta.classes)
        self.model_name: str = meta.name
        self.model_version: str = meta.version
        self.card_markdown: str = read_card(model_dir)
        self.input_size: int = int(meta.input.size)
        self.box_weights = tuple(meta.box_coder.weights)
        self._anchors = anchors_from_metadata(meta)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.model_name}:{self.model_version} classes={len(self.classes)}>"

    def _prepare(self, image: np.ndarray) -> tuple[np.ndarray, float, tuple[int, int]]:
        img = check_image(image)
        boxed, scale = letterbox(img, self.input_size, checked=True)
        return boxed[None, None], scale, (int(img.shape[0]), int(img.shape[1]))

    def _run(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def infer(self, image: np.ndarray) -> RawOutput:
        """Run the network on one 2-D image (float32 [0, 1], any size)."""
        batch, scale, orig = self._prepare(image)
        cls_logits, deltas = self._run(batch)
        return RawOutput(kind="anchors", orig_size=orig, cls_logits=cls_logits[0], box_deltas=deltas[0],
                         level_sizes=tuple(len(a) for a in self._anchors), scale=scale)

    def postprocess(self, raw: RawOutput, *, score_thr: float = 0.5, nms_thr: float = 0.5,
                    class_thr: Mapping[str, float] | None = None, classes: set[str] | None = None,
                    topk: int = 1000, max_det: int = 100) -> Detections:
        """Thresholds, top-k, class-wise NMS and max detections in numpy (cheap; call as often as you like)."""
        return postprocess(raw, self._anchors, self.classes, score_thr=score_thr, nms_thr=nms_thr,
                           class_thr=class_thr, classes=classes, topk=topk, max_det=max_det, weights=self.box_weights)

    def predict(self, image: np.ndarray, *, score_thr: float = 0.5, nms_thr: float = 0.5,
                class_thr: Mapping[str, float] | None = None, classes: set[str] | None = None,
                topk: int = 1000, max_det: int = 100) -> Detections:
        """``postprocess(infer(image), ...)``."""
        return self.postprocess(self.infer(image), score_thr=score_thr, nms_thr=nms_thr, class_thr=class_thr,
                                classes=classes, topk=topk, max_det=max_det)


def _check_outputs(model_dir: Path, classes: tuple[str, ...], n_anchors: int, cls_shape: list,
                   reg_shape: list) -> None:
    n_cls = cls_shape[-1]
    if isinstance(n_cls, int) and n_cls != len(classes):
        raise InputError(f"{model_dir}: model outputs {n_cls} classes but metadata lists {len(classes)} "
                         f"({', '.join(classes)})")
    n = cls_shape[-2]
    if isinstance(n, int) and n != n_anchors:
        raise InputError(f"{model_dir}: model has {n} anchors but its metadata describes {n_anchors}")


class OnnxPredictor(Predictor):
    """ONNX Runtime on CPU; numpy anchors, decoding and NMS. Imports no torch."""

    backend = "onnx"

    def __init__(self, model_dir: Path, meta: ModelMetadata, *, threads: int | None = None, opt_level: str = "all",
                 onnx_file: str | None = None, session_config: Mapping[str, str] | None = None):
        super().__init__(model_dir, meta)
        info = meta.onnx
        path = self.model_dir / (onnx_file or info.file)
        if onnx_file is None:
            verify_file(path, info)
        elif not path.is_file():
            raise InputError(f"{path}: model file missing")
        so = ort.SessionOptions()
        so.graph_optimization_level = {
            "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
            "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
            "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
            "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
        }[opt_level]
        if threads:
            so.intra_op_num_threads = int(threads)
        so.log_severity_level = 3
        for key, value in (session_config or {}).items():  # e.g. session.intra_op.allow_spinning
            so.add_session_config_entry(key, value)
        try:
            data = path.read_bytes()
            if info.weights in ("fp16", "int8") or onnx_file is not None:
                data = expand_weights(data)  # fp16/int8-stored weights -> float32: runs as fast as fp32
            self.session = ort.InferenceSession(data, so, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types for unreadable files
            raise InputError(f"{path}: not a loadable ONNX model ({str(exc).splitlines()[0][:160]})") from None
        outs = {o.name: o.shape for o in self.session.get_outputs()}
        if set(outs) != {"cls_logits", "bbox_deltas"}:
            raise InputError(f"{path}: expected outputs cls_logits and bbox_deltas, found {sorted(outs)}")
        self._input = self.session.get_inputs()[0].name
        _check_outputs(self.model_dir, self.classes, sum(len(a) for a in self._anchors),
                       outs["cls_logits"], outs["bbox_deltas"])

    def _run(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        cls_logits, deltas = self.session.run(["cls_logits", "bbox_deltas"], {self._input: batch.astype(np.float32)})
        return cls_logits, deltas


class TorchPredictor(Predictor):
    """Eager PyTorch with the same weights (``model.pt``) and the same numpy post-processing."""

    backend = "torch"

    def __init__(self, model_dir: Path, meta: ModelMetadata, *, module: object = None):
        super().__init__(model_dir, meta)
        import torch  # the `train` extra: serving never imports torch (the onnx backend is the default)

        from cxr.model.net import RawRetinaNet, build_retinanet

        if module is None:
            info = meta.torch
            path = self.model_dir / (info.file if info is not None else "model.pt")
            if not path.is_file():
                raise InputError(f"{path}: no torch weights beside the ONNX model (the torch backend needs model.pt; "
                                 "it is kept only for models trained on this machine)")
            if info is not None:
                verify_file(path, info)
            model = build_retinanet(meta.arch, len(self.classes))
            try:
                state = torch.load(path, map_location="cpu", weights_only=True)
                model.load_state_dict(state)
            except Exception as exc:
                raise InputError(f"{path}: torch weights do not fit the architecture or classes in metadata "
                                 f"({str(exc).splitlines()[0][:160]})") from None
            module = RawRetinaNet(model).eval()
        self.module = module
        self._torch = torch

    def _run(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        with self._torch.inference_mode():
            cls_logits, deltas = self.module(self._torch.from_numpy(batch))
        return cls_logits.numpy(), deltas.numpy()


def load_predictor(settings: Settings | None = None, *, backend: str | None = None,
                   model_dir: str | Path | None = None, threads: int | None = None) -> Predictor:
    """The predictor for ``model_dir`` (or settings' model_name/model_version), cached per (dir, backend, threads)."""
    settings = settings or get_settings()
    backend = backend or settings.predictor_backend
    if backend not in BACKENDS:
        raise ConfigError(f"unknown backend {backend!r}; use one of {', '.join(BACKENDS)}", setting="CXR_PREDICTOR_BACKEND")
    if model_dir is None:
        model_dir = resolve_model_dir(settings.models_dir, settings.model_name, settings.model_version)
    model_dir = Path(model_dir).resolve()
    key = (str(model_dir), backend, threads)
    with _LOCK:
        if key in _CACHE:
            return _CACHE[key]
        meta = read_metadata(model_dir)
        pred: Predictor = TorchPredictor(model_dir, meta) if backend == "torch" else \
            OnnxPredictor(model_dir, meta, threads=threads)
        _CACHE[key] = pred
        return pred


def clear_cache() -> None:
    with _LOCK:
        _CACHE.clear()
