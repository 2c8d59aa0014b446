"""``cxr phantoms`` and ``cxr model``: synthetic data, training, evaluation, export and the registry."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

model = typer.Typer(help="The detector: train (demo: synthetic phantoms, not for clinical use), evaluate, export, "
                         "list the registry, show a model card.", no_args_is_help=True)


def _settings():
    from cxr.config import get_settings

    return get_settings()


def phantoms(
    n: int = typer.Argument(..., min=1, help="Number of images."),
    out_dir: Path = typer.Argument(..., help="Output folder: images/, annotations/instances.json (COCO), labels.csv (VinDr)."),
    dicom: bool = typer.Option(False, "--dicom", help="Write DICOM with FAKE patient tags instead of PNG."),
    seed: int = typer.Option(0, help="First seed; image i uses seed+i (same seed, same image)."),
    size: int = typer.Option(512, min=64, help="Width and height in pixels."),
    classes: str = typer.Option("seed", help="'seed' (5), 'vindr' (14) or a comma-separated list."),
    packed: bool = typer.Option(False, help="Many findings per image (training style)."),
    photometric: str = typer.Option("MONOCHROME2", help="DICOM only: MONOCHROME2 or MONOCHROME1."),
    bits: int = typer.Option(16, help="DICOM only: 8 or 16 bits per pixel."),
) -> None:
    """Write N synthetic chest X-ray phantoms with labeled findings (not patient data)."""
    from tqdm.auto import tqdm

    from cxr.model.classes import resolve_classes
    from cxr.model.datasets import Sample, write_coco, write_vindr_csv
    from cxr.model.phantoms import generate_phantom, write_dicom, write_png

    cls = resolve_classes(classes)
    samples = []
    for i in tqdm(range(n), desc="phantoms", disable=None):
        p = generate_phantom(seed + i, size, cls, packed=packed)
        stem = f"phantom_{seed + i:08d}"
        if dicom:
            path = write_dicom(p, out_dir / "images" / f"{stem}.dcm", photometric=photometric, bits=bits)
        else:
            path = write_png(p, out_dir / "images" / f"{stem}.png")
        samples.append(Sample(path, p.boxes, p.labels, p.width, p.height, stem, cls))
    write_coco(samples, out_dir / "annotations" / "instances.json", cls, description="cxr synthetic phantoms")
    write_vindr_csv(samples, out_dir / "labels.csv")
    n_boxes = sum(len(s.boxes) for s in samples)
    typer.echo(f"wrote {n} {'DICOM' if dicom else 'PNG'} phantoms with {n_boxes} boxes to {out_dir} "
               "(annotations/instances.json, labels.csv)")


@model.command("train")
def train_cmd(
    recipe: str = typer.Option("demo", help="demo (ResNet18-FPN128 at 192 px), r50 (ResNet50-FPN v2) or smoke."),
    data: str = typer.Option("phantoms", help="'phantoms' (generated on the fly), a COCO dir/JSON (the mart's export) "
                                              "or a VinDr-CXR CSV."),
    fmt: Optional[str] = typer.Option(None, "--format", help="coco or vindr (guessed from the path)."),
    images_dir: Optional[Path] = typer.Option(None, help="VinDr CSV: folder of <image_id>.png/.dicom (default: images/ beside)."),
    classes: Optional[str] = typer.Option(None, help="Phantoms: 'seed', 'vindr' or a list; datasets: their own."),
    minutes: Optional[float] = typer.Option(None, help="Wall-clock budget (default: the recipe's)."),
    steps: Optional[int] = typer.Option(None, help="Step budget instead of minutes."),
    epochs: Optional[float] = typer.Option(None, help="Epoch budget (datasets only)."),
    backbone: Optional[str] = typer.Option(None, help="resnet18 or resnet50_v2."),
    size: Optional[int] = typer.Option(None, help="Training (= model input) size, multiple of 32."),
    batch_size: Optional[int] = typer.Option(None),
    lr: Optional[float] = typer.Option(None),
    threads: Optional[int] = typer.Option(None, help="torch threads (default: torch's)."),
    name: Optional[str] = typer.Option(None, help="Model name (default: CXR_MODEL_NAME)."),
    version: Optional[str] = typer.Option(None, help="Output version (default: UTC timestamp)."),
    weights: str = typer.Option("auto", help="ONNX weight storage: auto (fp16/int8 if <= 15 MB and mAP drop <= 0.02), fp32, fp16, int8."),
    eval_n: int = typer.Option(200, help="Held-out phantoms to evaluate on."),
    init_weights: Optional[Path] = typer.Option(None, help="Fine-tune from this model.pt (same recipe architecture and classes)."),
) -> None:
    """Train a RetinaNet, export ONNX + metadata + model card to the registry, and evaluate it."""
    from cxr.errors import InputError
    from cxr.model.evaluate import metrics_table
    from cxr.model.train import train_and_register

    if weights not in ("auto", "fp32", "fp16", "int8"):
        raise InputError(f"--weights must be auto, fp32, fp16 or int8, got {weights!r}")
    s = _settings()
    rep = train_and_register(recipe, data=data, fmt=fmt, images_dir=images_dir, classes=classes,
                             models_dir=s.models_dir, name=name or s.model_name, version=version, weights=weights,
                             eval_n=eval_n, minutes=minutes, steps=steps, epochs=epochs, backbone=backbone, size=size,
                             batch_size=batch_size, lr=lr, threads=threads, init_weights=init_weights, log=typer.echo)
    typer.echo(metrics_table(rep["metrics"]))
    typer.echo(f"model: {rep['model_dir']} ({rep['weights']} weights, {rep['bytes'] / 1e6:.1f} MB); "
               f"{rep['training']['cpu_seconds'] / 60:.1f} CPU min, {rep['training']['wall_seconds'] / 60:.1f} wall min")


@model.command("eval")
def eval_cmd(
    data: str = typer.Option("phantoms", help="'phantoms' (held-out seeds) or a COCO dir/JSON or VinDr CSV."),
    fmt: Optional[str] = typer.Option(None, "--format", help="coco or vindr."),
    images_dir: Optional[Path] = typer.Option(None, help="VinDr CSV: image folder."),
    n: int = typer.Option(200, help="Number of held-out phantoms."),
    size: int = typer.Option(512, help="Phantom size."),
    model_dir: Optional[Path] = typer.Option(None, help="A model folder (default: the registry's CXR_MODEL_NAME/VERSION)."),
    backend: Optional[str] = typer.Option(None, help="onnx or torch (default: CXR_PREDICTOR_BACKEND)."),
    as_json: bool = typer.Option(False, "--json", help="Print the metrics as JSON."),
) -> None:
    """COCO mAP@0.5, mAP@[.5:.95], AP per class and sensitivity at 1 FP/image (pycocotools)."""
    from cxr.model.datasets import read_dataset
    from cxr.model.evaluate import evaluate_phantoms, evaluate_samples, metrics_table
    from cxr.model.predict import load_predictor

    pred = load_predictor(_settings(), backend=backend, model_dir=model_dir)
    if data in ("phantoms", "phantom"):
        m = evaluate_phantoms(pred, n, size)
    else:
        samples = read_dataset(Path(data), fmt, images_dir=images_dir, classes=pred.classes)
        m = evaluate_samples(pred, samples, dataset=str(data))
    if as_json:
        typer.echo(json.dumps(m, indent=2))
    else:
        typer.echo(f"{pred.model_name} {pred.model_version} ({pred.backend}) on {m['dataset']}")
        typer.echo(metrics_table(m))


@model.command("export")
def export_cmd(
    model_dir: Path = typer.Argument(..., help="A model folder with model.pt (torch weights) and metadata.json."),
    weights: str = typer.Option("int8", help="ONNX weight storage: fp32, fp16 or int8."),
    out: Optional[Path] = typer.Option(None, help="Write model.onnx here instead of replacing the folder's."),
) -> None:
    """Re-export a model's ONNX from its torch weights with another weight storage (metadata updated)."""
    import torch  # the `train` extra

    from cxr.errors import InputError
    from cxr.model.export import finish, write_onnx
    from cxr.model.net import build_retinanet
    from cxr.model.registry import read_metadata

    if weights not in ("fp32", "fp16", "int8"):
        raise InputError(f"--weights must be fp32, fp16 or int8, got {weights!r}")
    meta = read_metadata(model_dir)
    pt = model_dir / (meta.torch.file if meta.torch is not None else "model.pt")
    if not pt.is_file():
        raise InputError(f"{pt}: no torch weights to export from")
    net = build_retinanet(meta.arch, len(meta.classes))
    try:
        net.load_state_dict(torch.load(pt, map_location="cpu", weights_only=True))
    except Exception as exc:
        raise InputError(f"{pt}: weights do not fit the metadata's architecture ({str(exc).splitlines()[0][:120]})") from None
    target_dir = out or model_dir
    target_dir.mkdir(parents=True, exist_ok=True)
    onnx_path = write_onnx(net.eval(), meta.arch, target_dir / "model.tmp.onnx", weights)  # type: ignore[arg-type]
    finish(target_dir, onnx_path, name=meta.name, version=meta.version, classes=meta.classes, arch=meta.arch,
           storage=weights, torch_path=pt if target_dir == model_dir else None,  # type: ignore[arg-type]
           training=meta.training, metrics=meta.metrics)
    final = target_dir / "model.onnx"
    typer.echo(f"{final}: {weights} weights, {final.stat().st_size / 1e6:.1f} MB (re-run `cxr model eval` to check mAP)")


@model.command("quantize")
def quantize_cmd(
    version: str = typer.Option(..., "--version", help="The new registry version, e.g. 1.1.0.", show_default=False),
    model_dir: Optional[Path] = typer.Option(None, help="The source model folder (default: the registry's "
                                             "CXR_MODEL_NAME/VERSION); it stays as it is."),
    calib_n: int = typer.Option(64, "--calib-n", min=8, help="Calibration phantoms (seeds apart from training and "
                                "evaluation)."),
    eval_n: int = typer.Option(200, "--eval-n", min=0, help="Held-out phantoms to evaluate the new version on "
                               "(0: keep the source's metrics)."),
    drift_n: int = typer.Option(200, "--drift-n", min=0, help="Held-out phantoms for the new version's drift "
                                "reference (as `cxr model drift-reference`; 0: none)."),
) -> None:
    """Static int8 quantization (QDQ, calibrated on phantoms) of a model, written as a new registry version
    with its own metrics and drift reference."""
    from cxr.model.evaluate import evaluate_phantoms
    from cxr.model.metadata import ModelMetadata
    from cxr.model.predict import OnnxPredictor
    from cxr.model.quantize import quantize_model
    from cxr.model.registry import read_metadata, resolve_model_dir

    s = _settings()
    src = model_dir or resolve_model_dir(s.models_dir, s.model_name, s.model_version)

    def evaluate(onnx_path: Path, meta: ModelMetadata) -> dict:
        return evaluate_phantoms(OnnxPredictor(onnx_path.parent, meta, onnx_file=onnx_path.name), n=eval_n)

    out = quantize_model(src, version, calib_n=calib_n, evaluate=evaluate if eval_n else None)
    new, old = read_metadata(out), read_metadata(src)
    typer.echo(f"{out}: static int8 (QDQ), {new.onnx.bytes / 1e6:.1f} MB; mAP@0.5 {new.metrics.get('map50', float('nan')):.4f} "
               f"(source {old.version}: {old.metrics.get('map50', float('nan')):.4f})")
    if drift_n:
        _write_drift_reference(out, drift_n, 512)


@model.command("list")
def list_cmd() -> None:
    """Models in the registry (CXR_MODELS_DIR) with classes, weights and mAP."""
    from cxr.model.registry import list_models, read_metadata

    s = _settings()
    rows = list_models(s.models_dir)
    if not rows:
        typer.echo(f"no models in {s.models_dir} (train one: cxr model train --recipe demo)")
    for name, version in rows:
        meta = read_metadata(s.models_dir / name / version)
        synth = " [synthetic training data, not for clinical use]" if meta.synthetic_training_data else ""
        typer.echo(f"{name} {version}: {len(meta.classes)} classes, {meta.onnx.weights} "
                   f"weights, mAP@0.5 {meta.metrics.get('map50', float('nan')):.3f}{synth}")


@model.command("card")
def card_cmd(
    model_dir: Optional[Path] = typer.Option(None, help="A model folder (default: the registry's CXR_MODEL_NAME/VERSION)."),
) -> None:
    """Print the model card (intended use, training data, metrics)."""
    from cxr.errors import InputError
    from cxr.model.registry import read_card, resolve_model_dir

    s = _settings()
    d = model_dir or resolve_model_dir(s.models_dir, s.model_name, s.model_version)
    text = read_card(d)
    if not text:
        raise InputError(f"{d}: no MODEL_CARD.md")
    typer.echo(text)


@model.command("drift-reference")
def drift_reference_cmd(
    model_dir: Optional[Path] = typer.Option(None, help="A model folder (default: the registry's CXR_MODEL_NAME/VERSION)."),
    n: int = typer.Option(200, min=10, help="Held-out phantoms to run the model on."),
    size: int = typer.Option(512, min=64, help="Phantom size in pixels."),
) -> None:
    """Compute the drift reference of a model from held-out phantoms and store it in its metadata.json.

    Deterministic (the evaluation seeds, the ONNX model, no training): what `cxr model train` stores
    for a new model, for a model made before it did. The model monitor compares live data with it.
    """
    from cxr.model.registry import resolve_model_dir

    s = _settings()
    _write_drift_reference(model_dir or resolve_model_dir(s.models_dir, s.model_name, s.model_version), n, size)


def _write_drift_reference(d: Path, n: int, size: int) -> None:
    """The drift reference of the model in ``d`` from ``n`` held-out phantoms, into its metadata.json."""
    from cxr.model.drift import phantom_arrays, reference_for, write_reference
    from cxr.model.evaluate import EVAL_SEED_BASE
    from cxr.model.predict import OnnxPredictor
    from cxr.model.registry import read_metadata

    meta = read_metadata(d)
    ref = reference_for(OnnxPredictor(d, meta), phantom_arrays(n, size, meta.classes, EVAL_SEED_BASE),
                        f"{n} held-out synthetic phantoms ({size} px, seeds from {EVAL_SEED_BASE})", total=n)
    path = write_reference(d, ref)
    feats = ", ".join(f"{k} (n={v.n})" for k, v in ref.features.items())
    typer.echo(f"{path}: drift reference from {ref.source}: {feats}")


def register(root: typer.Typer) -> None:
    root.command("phantoms")(phantoms)
    root.add_typer(model, name="model")
