"""Training (imports torch): torchvision RetinaNet on phantoms made on the fly, a COCO dir or a VinDr CSV.

Lessons from the trial: ``min_size``/``max_size`` = the training size, BatchNorm (not Frozen) from
scratch, smallest anchors fit ~12 px nodules, nodule-packed images, channels_last on CPU.
The budget is wall-clock minutes, steps or epochs; the learning rate follows a warmup + cosine
schedule over the budget. ``train`` is what ``cxr model train`` and notebooks/train_detector.ipynb call;
training images are read through :func:`cxr.model.datasets.load_image`, the serving path's pixels.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from cxr.errors import InputError
from cxr.model.classes import resolve_classes
from cxr.model.datasets import Sample, load_image, read_dataset
from cxr.model.drift import phantom_arrays, reference_for, write_reference
from cxr.model.evaluate import EVAL_SEED_BASE, evaluate_phantoms, evaluate_samples
from cxr.model.export import build_metadata, finish, store_weights, write_onnx
from cxr.model.metadata import WeightStorage
from cxr.model.net import build_retinanet, default_arch
from cxr.model.phantoms import generate_phantom
from cxr.model.predict import OnnxPredictor
from cxr.model.preprocess import letterbox
from cxr.model.recipes import Recipe, get_recipe
from cxr.model.registry import list_versions

TRAIN_SEED_BASE = 0  # training phantoms use seeds from here up; evaluation uses evaluate.EVAL_SEED_BASE
MAX_COMMITTED_BYTES = 15 * 1024 * 1024
MAX_MAP_DROP = 0.02

Batch = list[tuple[np.ndarray, np.ndarray, np.ndarray]]


@dataclass
class TrainResult:
    model: torch.nn.Module
    arch: dict[str, Any]
    classes: tuple[str, ...]
    history: list[dict[str, float]] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)


# -- data ----------------------------------------------------------------------------------------
def phantom_batches(classes: Sequence[str], size: int, batch_size: int, *, packed_fraction: float,
                    seed: int = 0) -> Iterator[Batch]:
    """Endless batches of phantoms drawn at the training size (deterministic for ``seed``)."""
    rng = np.random.default_rng(seed)
    n = TRAIN_SEED_BASE + seed * 1_000_003
    while True:
        batch = []
        for _ in range(batch_size):
            p = generate_phantom(n, size, classes, packed=bool(rng.uniform() < packed_fraction))
            n += 1
            batch.append((p.as_float(), p.boxes, p.labels))
        yield batch


def _flip(img: np.ndarray, boxes: np.ndarray, width: float) -> tuple[np.ndarray, np.ndarray]:
    """Mirror the letterboxed image's content (its left ``width`` pixels) and its boxes."""
    w = int(round(width))
    img = np.ascontiguousarray(img.copy())
    img[:, :w] = img[:, :w][:, ::-1]
    if len(boxes):
        boxes = np.stack([width - boxes[:, 2], boxes[:, 1], width - boxes[:, 0], boxes[:, 3]], 1)
    return img, boxes


def sample_batches(samples: Sequence[Sample], size: int, batch_size: int, *, seed: int = 0,
                   epochs: float | None = None) -> Iterator[Batch]:
    """Batches from dataset samples (letterboxed, random horizontal flip), reshuffled every epoch."""
    rng = np.random.default_rng(seed)
    if not samples:
        raise InputError("the training set is empty")
    epoch = 0
    while epochs is None or epoch < math.ceil(epochs):
        perm = rng.permutation(len(samples))
        for start in range(0, max(1, len(samples) - batch_size + 1), batch_size):
            batch = []
            for i in perm[start:start + batch_size]:
                s = samples[int(i)]
                img, scale = letterbox(load_image(s.image_path), size)
                boxes = s.boxes.astype(np.float32) * scale
                if rng.uniform() < 0.5:
                    img, boxes = _flip(img, boxes, s.width * scale)
                batch.append((img, boxes, s.labels))
            yield batch
        epoch += 1


def _to_torch(batch: Batch) -> tuple[torch.Tensor, list[dict[str, torch.Tensor]]]:
    images = torch.from_numpy(np.stack([b[0] for b in batch])[:, None]).contiguous(memory_format=torch.channels_last)
    targets = [{"boxes": torch.from_numpy(np.asarray(b[1], np.float32).reshape(-1, 4)),
                "labels": torch.from_numpy(np.asarray(b[2], np.int64))} for b in batch]
    return images, targets


# -- the run -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Budget:
    """How long to train: ``steps`` or wall-clock ``minutes``."""

    minutes: float | None
    steps: int | None

    def fraction(self, step: int, elapsed_s: float) -> float:
        return step / self.steps if self.steps else elapsed_s / (float(self.minutes or 0) * 60)

    @property
    def total(self) -> int:
        return self.steps if self.steps else int(float(self.minutes or 0) * 60)


def _budget(r: Recipe, minutes: float | None, steps: int | None, epochs: float | None,
            samples: Sequence[Sample] | None) -> Budget:
    if minutes is not None or steps is not None or epochs is not None:
        r = replace(r, minutes=None, steps=None)
    budget_steps = steps if steps is not None else r.steps
    if samples is not None and epochs is not None:
        budget_steps = int(math.ceil(epochs * len(samples) / r.batch_size))
    budget = Budget(minutes if minutes is not None else r.minutes, budget_steps)
    if not budget.minutes and not budget.steps:
        raise InputError("give a budget: minutes, steps or epochs")
    return budget


def _optimizer(model: torch.nn.Module, r: Recipe) -> torch.optim.Optimizer:
    """AdamW, no weight decay on biases and norm parameters."""
    decay, no_decay = [], []
    for _name, p in model.named_parameters():
        (no_decay if p.ndim <= 1 else decay).append(p)
    return torch.optim.AdamW([{"params": decay, "weight_decay": r.weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}], lr=r.lr)


def _learning_rate(r: Recipe, step: int, frac: float) -> float:
    """Linear warm-up, then cosine down to 2 % over the budget."""
    warm = min(1.0, (step + 1) / max(1, r.warmup_steps))
    return r.lr * warm * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * min(frac, 1.0))))


def _step(model: torch.nn.Module, opt: torch.optim.Optimizer, batch: Batch, step: int) -> dict[str, float]:
    images, targets = _to_torch(batch)
    losses = model(list(images), targets)
    loss = losses["classification"] + losses["bbox_regression"]
    if not torch.isfinite(loss):
        raise InputError(f"training diverged at step {step} (loss {float(loss)}); lower the learning rate")
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
    opt.step()
    return {"loss": float(loss.detach()), "classification": float(losses["classification"].detach()),
            "bbox_regression": float(losses["bbox_regression"].detach())}


def _data(r: Recipe, classes: tuple[str, ...], samples: Sequence[Sample] | None, seed: int) -> tuple[Iterator[Batch], str]:
    if samples is None:
        desc = (f"synthetic phantoms generated on the fly at {r.size} px "
                f"({int(r.packed_fraction * 100)}% nodule-packed), seeds from {TRAIN_SEED_BASE}")
        return phantom_batches(classes, r.size, r.batch_size, packed_fraction=r.packed_fraction, seed=seed), desc
    return sample_batches(samples, r.size, r.batch_size, seed=seed), f"{len(samples)} images from a dataset"


def train(recipe: str = "demo", *, classes: str | Sequence[str] | None = None, samples: Sequence[Sample] | None = None,
          minutes: float | None = None, steps: int | None = None, epochs: float | None = None,
          backbone: str | None = None, size: int | None = None, batch_size: int | None = None,
          lr: float | None = None, seed: int = 0, threads: int | None = None, progress: bool | None = None,
          on_step: Callable[[dict, torch.nn.Module], None] | None = None,
          init_weights: str | Path | None = None) -> TrainResult:
    """Train a RetinaNet; ``samples`` (from ``cxr.model.datasets``) or phantoms on the fly when None."""
    r = get_recipe(recipe).with_overrides(backbone=backbone, size=size, batch_size=batch_size, lr=lr)
    budget = _budget(r, minutes, steps, epochs, samples)
    if int(r.size) % 32:
        raise InputError(f"image size must be a multiple of 32, got {r.size}")
    cls = resolve_classes(classes)
    torch.manual_seed(seed)
    if threads:
        torch.set_num_threads(int(threads))
    arch = default_arch(r.backbone, int(r.size), int(r.smallest_anchor))
    arch["head_convs"] = int(r.head_convs)
    model = _initial_model(arch, len(cls), init_weights)
    opt = _optimizer(model, r)
    batches, data_desc = _data(r, cls, samples, seed)
    bar = tqdm(total=budget.total, desc=f"train {recipe}", unit="step" if budget.steps else "s",
               disable=(progress is False) if progress is not None else None, dynamic_ncols=True)
    history: list[dict[str, float]] = []
    t0, c0 = time.time(), time.process_time()
    step, ema = 0, None
    while (frac := budget.fraction(step, time.time() - t0)) < 1.0:
        lr_now = _learning_rate(r, step, frac)
        for g in opt.param_groups:
            g["lr"] = lr_now
        batch = next(batches, None)
        if batch is None:
            break
        rec = {"step": step + 1, **_step(model, opt, batch, step), "lr": lr_now,
               "wall_s": time.time() - t0, "cpu_s": time.process_time() - c0}
        step += 1
        ema = rec["loss"] if ema is None else 0.9 * ema + 0.1 * rec["loss"]
        history.append(rec)
        if on_step:
            on_step(rec, model)
        bar.set_postfix(loss=f"{ema:.3f}")
        bar.update(1 if budget.steps else max(0, int(rec["wall_s"]) - bar.n))
    bar.close()
    model.eval()
    info = {"recipe": recipe, "data": data_desc, "synthetic": samples is None, "steps": step,
            "batch_size": int(r.batch_size), "lr": r.lr, "optimizer": "AdamW, warmup + cosine",
            "wall_seconds": round(time.time() - t0, 1), "cpu_seconds": round(time.process_time() - c0, 1),
            "threads": torch.get_num_threads(), "seed": seed, "init_weights": str(init_weights) if init_weights else None,
            "torch": torch.__version__, "final_loss_ema": ema, "host_cpus": os.cpu_count()}
    return TrainResult(model=model, arch=arch, classes=cls, history=history, info=info)


def _initial_model(arch: dict[str, Any], n_classes: int, init_weights: str | Path | None) -> torch.nn.Module:
    """A fresh network, or one that continues from a ``model.pt`` of the same architecture and classes."""
    model = build_retinanet(arch, n_classes)
    if init_weights is not None:
        try:
            model.load_state_dict(torch.load(init_weights, map_location="cpu", weights_only=True))
        except (OSError, RuntimeError) as exc:
            raise InputError(f"{init_weights}: cannot start from these weights ({str(exc).splitlines()[0][:160]})") from None
    model = model.to(memory_format=torch.channels_last)
    model.train()
    return model


def save_history(history: list[dict], path: Path) -> None:
    Path(path).write_text(json.dumps(history) + "\n", encoding="utf-8")


# -- train, then register ----------------------------------------------------------------------------
def _split(samples: list[Sample]) -> tuple[list[Sample], list[Sample]]:
    """(training, held-out 10 %) by a fixed permutation."""
    idx = np.random.default_rng(0).permutation(len(samples))
    n_eval = max(1, len(samples) // 10) if len(samples) > 1 else 0
    train_set = [samples[i] for i in idx[n_eval:]] or samples
    return train_set, [samples[i] for i in idx[:n_eval]]


def train_and_register(recipe: str = "demo", *, data: str | Path | None = None, fmt: str | None = None,
                       images_dir: str | Path | None = None, classes: str | Sequence[str] | None = None,
                       models_dir: str | Path = "models", name: str = "cxr-demo", version: str | None = None,
                       weights: str = "auto", eval_n: int = 200, eval_size: int = 512, progress: bool | None = None,
                       log: Callable[[str], None] = print, **train_kwargs: Any) -> dict[str, Any]:
    """Train, export to ``models/<name>/<version>/``, evaluate, pick the weight storage, write the card.

    ``data`` None/"phantoms": phantoms on the fly (evaluated on ``eval_n`` held-out phantoms); else a COCO
    dir/JSON or a VinDr CSV (evaluated on a held-out 10%). ``weights="auto"``: the smallest of fp16/int8
    storage that fits 15 MB with an mAP@0.5 drop <= 0.02 against fp32, else fp32.
    Returns a report dict (also in metadata.json); the loss history goes to ``history.json``.
    ``train_kwargs`` are :func:`train`'s keyword arguments (budget, size, threads...).
    """
    models_dir = Path(models_dir)
    version = version or _dt.datetime.now(_dt.timezone.utc).strftime("%Y.%m.%d.%H%M")
    out_dir = models_dir / name / version
    if version in list_versions(models_dir, name):
        raise InputError(f"{out_dir} already exists; choose another --version")
    samples = eval_samples = None
    if data not in (None, "phantoms", "phantom"):
        all_samples = read_dataset(Path(data), fmt, images_dir=images_dir, classes=classes)
        if not all_samples:
            raise InputError(f"{data}: no images")
        classes = all_samples[0].classes
        samples, eval_samples = _split(all_samples)
    res = train(recipe, classes=classes, samples=samples, progress=progress, **train_kwargs)
    return register(res, out_dir, name=name, version=version, weights=weights, eval_samples=eval_samples,
                    eval_n=eval_n, eval_size=eval_size, progress=progress, log=log, data_desc=str(data))


def _candidates(weights: str) -> list[WeightStorage]:
    if weights == "auto":
        return ["fp16", "int8"]
    return [] if weights == "fp32" else [weights]  # type: ignore[list-item]


def register(res: TrainResult, out_dir: Path, *, name: str, version: str, weights: str = "auto",
             eval_samples: Sequence[Sample] | None = None, eval_n: int = 200, eval_size: int = 512,
             progress: bool | None = None, log: Callable[[str], None] = print, data_desc: str = "") -> dict[str, Any]:
    """Export a trained model to ``out_dir``, evaluate fp32 and compressed storage, keep the chosen one."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    torch_path = out_dir / "model.pt"
    torch.save(res.model.state_dict(), torch_path)
    save_history(res.history, out_dir / "history.json")
    fp32_path = write_onnx(res.model, res.arch, out_dir / "model.fp32.onnx", "fp32")
    common = {"name": name, "version": version, "classes": res.classes, "arch": res.arch, "torch_path": torch_path,
              "training": res.info}

    def evaluate(onnx_path: Path, storage: WeightStorage) -> dict[str, Any]:
        meta = build_metadata(onnx_path=onnx_path, weights_storage=storage, metrics=None, **common)
        pred = OnnxPredictor(out_dir, meta, onnx_file=onnx_path.name)
        if eval_samples is None:
            return evaluate_phantoms(pred, eval_n, eval_size, progress=progress)
        return evaluate_samples(pred, eval_samples, progress=progress, dataset=f"held-out 10% of {data_desc}")

    log(f"trained {res.info['steps']} steps in {res.info['wall_seconds'] / 60:.1f} wall min "
        f"({res.info['cpu_seconds'] / 60:.1f} CPU min); evaluating fp32")
    m32 = evaluate(fp32_path, "fp32")
    log(f"fp32: mAP@0.5 {m32['map50']:.3f}, {fp32_path.stat().st_size / 1e6:.1f} MB")
    chosen: tuple[WeightStorage, Path, dict[str, Any]] = ("fp32", fp32_path, m32)
    tried: dict[str, dict[str, Any]] = {"fp32": {"bytes": fp32_path.stat().st_size, "map50": m32["map50"]}}
    for storage in _candidates(weights):
        path = store_weights(fp32_path, out_dir / f"model.{storage}.onnx", storage)
        size = path.stat().st_size
        if weights == "auto" and size > MAX_COMMITTED_BYTES:
            tried[storage] = {"bytes": size, "skipped": "over 15 MB"}
            path.unlink()
            continue
        m = evaluate(path, storage)
        tried[storage] = {"bytes": size, "map50": m["map50"]}
        log(f"{storage}: mAP@0.5 {m['map50']:.3f} (drop {m32['map50'] - m['map50']:+.3f}), {size / 1e6:.1f} MB")
        if weights != "auto" or m32["map50"] - m["map50"] <= MAX_MAP_DROP:
            chosen = (storage, path, m)
            break
        path.unlink()
    storage, path, metrics = chosen
    metrics = {**metrics, "fp32_map50": m32["map50"], "weight_storage_trials": tried}
    meta = finish(out_dir, path, storage=storage, metrics=metrics, **common)
    for leftover in out_dir.glob("model.*.onnx"):
        leftover.unlink()
    final = out_dir / "model.onnx"
    # The drift reference, stored with the model: what it saw on its held-out images (cxr.monitor).
    served = OnnxPredictor(out_dir, meta)
    if eval_samples is None:
        ref = reference_for(served, phantom_arrays(eval_n, eval_size, res.classes, EVAL_SEED_BASE),
                            f"{eval_n} held-out synthetic phantoms ({eval_size} px, seeds from {EVAL_SEED_BASE})",
                            progress=progress, total=eval_n)
    else:
        ref = reference_for(served, (load_image(x.image_path) for x in eval_samples),
                            f"held-out 10% of {data_desc} ({len(eval_samples)} images)", progress=progress,
                            total=len(eval_samples))
    write_reference(out_dir, ref)
    return {"model_dir": str(out_dir), "weights": storage, "bytes": final.stat().st_size, "metrics": meta.metrics,
            "training": res.info, "history": res.history}
