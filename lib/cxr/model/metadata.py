"""A registry model's ``metadata.json``, typed: what serving, training and the model card read.

``models/<name>/<version>/metadata.json`` is written by :func:`cxr.model.export.build_metadata`
and read back by :func:`cxr.model.registry.read_metadata` as a :class:`ModelMetadata`. Unknown
keys are kept (``extra="allow"``), so a newer writer's metadata still loads here.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from cxr.model.drift import DriftReference

#: how model.onnx stores its weights: fp32; fp16 or int8 weight-only (expanded to fp32 at load); int8-static =
#: statically quantized QDQ graph (int8 weights and activations, run as int8 kernels; cxr.model.quantize)
WeightStorage = Literal["fp32", "fp16", "int8", "int8-static"]
Backbone = Literal["resnet18", "resnet50_v2"]


class _Spec(BaseModel):
    model_config = ConfigDict(extra="allow")


class Arch(_Spec):
    """Enough to rebuild the network (:func:`cxr.model.net.build_retinanet`)."""

    backbone: Backbone = "resnet18"
    fpn_channels: int = 128
    input_size: int = 256
    in_channels: int = 1
    mean: float = 0.5
    std: float = 0.25
    head_convs: int = 4
    anchor_sizes: list[list[int | float]]
    aspect_ratios: list[list[float]]


class InputSpec(_Spec):
    size: int
    channels: int = 1
    layout: str = "NCHW"
    range: tuple[float, float] = (0.0, 1.0)
    resize: str = "letterbox: keep aspect, longer side = size, top-left, zero pad"
    normalization: dict[str, Any] = Field(default_factory=dict)


class AnchorSpec(_Spec):
    sizes: list[list[int | float]]
    aspect_ratios: list[list[float]]
    feature_sizes: list[list[int]] | None = None
    order: str = "torchvision AnchorGenerator: level, y, x, (ratio, scale)"


class BoxCoderSpec(_Spec):
    weights: tuple[float, float, float, float] = (1.0, 1.0, 1.0, 1.0)
    clip: str = "log(1000/16)"


class PostprocessDefaults(_Spec):
    score_thr: float = 0.5
    nms_thr: float = 0.5
    topk: int = 1000
    max_det: int = 100


class Artifact(_Spec):
    """A weights file beside the metadata, with the size and checksum it must have (when recorded)."""

    file: str
    bytes: int | None = None
    sha256: str | None = None


class OnnxArtifact(Artifact):
    file: str = "model.onnx"
    opset: int | None = None
    weights: WeightStorage = "fp32"
    outputs: list[str] = Field(default_factory=lambda: ["cls_logits", "bbox_deltas"])


class ModelMetadata(_Spec):
    """``metadata.json`` of one registry model."""

    name: str
    version: str
    format: str
    created: str | None = None
    synthetic_training_data: bool = True
    intended_use: str = "Demonstration and software testing only. NOT FOR CLINICAL USE."
    classes: list[str]
    input: InputSpec
    anchors: AnchorSpec
    box_coder: BoxCoderSpec = Field(default_factory=BoxCoderSpec)
    postprocess_defaults: PostprocessDefaults = Field(default_factory=PostprocessDefaults)
    arch: Arch
    onnx: OnnxArtifact = Field(default_factory=OnnxArtifact)
    torch: Artifact | None = None
    training: dict[str, Any] = Field(default_factory=dict)
    metrics: dict[str, Any] = Field(default_factory=dict)
    #: What the model saw when it was made (scores, image intensities), for drift monitoring.
    drift_reference: DriftReference | None = None

    @field_validator("classes")
    @classmethod
    def _unique_classes(cls, v: list[str]) -> list[str]:
        if not v or len(set(v)) != len(v):
            raise ValueError("classes must be a non-empty list of unique names")
        return v

    @field_validator("version", mode="before")
    @classmethod
    def _version_text(cls, v: object) -> str:
        return str(v)

    def to_json(self) -> str:
        return self.model_dump_json(indent=2, exclude_none=True) + "\n"
