"""Training (imports torch): torchvision RetinaNet on phantoms made on the fly, a COCO dir or a VinDr CSV.

Lessons from the trial: ``min_size``/``max_size`` = the training size, BatchNorm (not Frozen) from
scratch, smallest anchors fit ~12 px nodules, nodule-packed images, channels_last on CPU.
The budget is wall-clock minutes, steps or epochs; the learning rate follows a warmup + cosine
schedule over the budget. ``train`` is what ``cxr model train`` and notebooks/train_detector.ipynb call.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from cxr.errors import InputError
from cxr.model.classes import resolve_classes
from cxr.model.net import build_retinanet, default_arch
from cxr.model.phantoms import generate_phantom
from cxr.model.preprocess import letterbox

#: recipes: everything a run needs apart from the data and the budget overrides
RECIPES: dict[str, dict] = {
    "demo": {"backbone": "resnet18", "size": 192, "batch_size": 4, "lr": 1e-3, "weight_decay": 1e-4,
             "warmup_steps": 30, "minutes": 9.5, "packed_fraction": 0.8, "head_convs": 2, "smallest_anchor": 12},
    "smoke": {"backbone": "resnet18", "size": 128, "batch_size": 2, "lr": 1e-3, "weight_decay": 0.0,
              "warmup_steps": 0, "steps": 12, "packed_fraction": 1.0, "head_convs": 1, "smallest_anchor": 8},
    "r50": {"backbone": "resnet50_v2", "size": 384, "batch_size": 4, "lr": 1e-3, "weight_decay": 1e-4,
            "warmup_steps": 50, "minutes": 120.0, "packed_fraction": 0.8, "head_convs": 4, "smallest_anchor": 12},
}

TRAIN_SEED_BASE = 0  # training phantoms use seeds from here up; evaluation uses evaluate.EVAL_SEED_BASE


@dataclass
class TrainResult:
    model: torch.nn.Module
    arch: dict
    classes: tuple[str, ...]
    history: list[dict] = field(default_factory=list)
    info: dict = field(default_factory=dict)


def phantom_batches(classes, size: int, batch_size: int, *, packed_fraction: float, seed: int = 0) -> Iterator[list]:
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


def sample_batches(samples, size: int, batch_size: int, *, seed: int = 0, epochs: float | None = None) -> Iterator[list]:
    """Batches from dataset samples (letterboxed, random horizontal flip), reshuffled every epoch."""
    from cxr.model.datasets import load_image

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
                    w = s.width * scale
                    img = np.ascontiguousarray(img.copy())
                    img[:, : int(round(w))] = img[:, : int(round(w))][:, ::-1]
                    boxes = np.stack([w - boxes[:, 2], boxes[:, 1], w - boxes[:, 0], boxes[:, 3]], 1) if len(boxes) else boxes
                batch.append((img, boxes, s.labels))
            yield batch
        epoch += 1


def _to_torch(batch, size: int):
    images = torch.from_numpy(np.stack([b[0] for b in batch])[:, None]).contiguous(memory_format=torch.channels_last)
    targets = [{"boxes": torch.from_numpy(np.asarray(b[1], np.float32).reshape(-1, 4)),
                "labels": torch.from_numpy(np.asarray(b[2], np.int64))} for b in batch]
    return images, targets


def train(
    recipe: str = "demo",
    *,
    classes=None,
    samples=None,
    minutes: float | None = None,
    steps: int | None = None,
    epochs: float | None = None,
    backbone: str | None = None,
    size: int | None = None,
    batch_size: int | None = None,
    lr: float | None = None,
    seed: int = 0,
    threads: int | None = None,
    progress: bool | None = None,
    on_step: Callable[[dict, torch.nn.Module], None] | None = None,
    init_weights: str | Path | None = None,
) -> TrainResult:
    """Train a RetinaNet; ``samples`` (from ``cxr.model.datasets``) or phantoms on the fly when None."""
    from tqdm.auto import tqdm

    if recipe not in RECIPES:
        raise InputError(f"unknown recipe {recipe!r}; use one of {', '.join(RECIPES)}")
    r = dict(RECIPES[recipe])
    for key, value in (("backbone", backbone), ("size", size), ("batch_size", batch_size), ("lr", lr)):
        if value is not None:
            r[key] = value
    if minutes is not None or steps is not None or epochs is not None:
        r.pop("minutes", None)
        r.pop("steps", None)
    budget_minutes = minutes if minutes is not None else r.get("minutes")
    budget_steps = steps if steps is not None else r.get("steps")
    if samples is not None and epochs is not None:
        budget_steps = int(math.ceil(epochs * len(samples) / r["batch_size"]))
    if not budget_minutes and not budget_steps:
        raise InputError("give a budget: minutes, steps or epochs")
    if int(r["size"]) % 32:
        raise InputError(f"image size must be a multiple of 32, got {r['size']}")
    classes = resolve_classes(classes)
    torch.manual_seed(seed)
    if threads:
        torch.set_num_threads(int(threads))
    arch = default_arch(r["backbone"], int(r["size"]), int(r["smallest_anchor"]))
    arch["head_convs"] = int(r["head_convs"])
    model = build_retinanet(arch, len(classes))
    if init_weights is not None:  # fine-tune: continue from a model.pt of the same architecture and classes
        try:
            model.load_state_dict(torch.load(init_weights, map_location="cpu", weights_only=True))
        except (OSError, RuntimeError) as exc:
            raise InputError(f"{init_weights}: cannot start from these weights ({str(exc).splitlines()[0][:160]})") from None
    model = model.to(memory_format=torch.channels_last)
    model.train()
    decay, no_decay = [], []
    for n_, p in model.named_parameters():
        (no_decay if p.ndim <= 1 else decay).append(p)
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": r["weight_decay"]},
                             {"params": no_decay, "weight_decay": 0.0}], lr=r["lr"])
    if samples is None:
        batches = phantom_batches(classes, int(r["size"]), int(r["batch_size"]), packed_fraction=r["packed_fraction"],
                                  seed=seed)
        data_desc = (f"synthetic phantoms generated on the fly at {r['size']} px "
                     f"({int(r['packed_fraction'] * 100)}% nodule-packed), seeds from {TRAIN_SEED_BASE}")
    else:
        batches = sample_batches(samples, int(r["size"]), int(r["batch_size"]), seed=seed)
        data_desc = f"{len(samples)} images from a dataset"
    use_bar = progress if progress is not None else None
    total = budget_steps if budget_steps else int(budget_minutes * 60)
    bar = tqdm(total=total, desc=f"train {recipe}", unit="step" if budget_steps else "s", disable=use_bar is False
               if use_bar is not None else None, dynamic_ncols=True)
    history: list[dict] = []
    t0, c0 = time.time(), time.process_time()
    step = 0
    ema = None
    while True:
        elapsed = time.time() - t0
        frac = step / budget_steps if budget_steps else elapsed / (budget_minutes * 60)
        if frac >= 1.0:
            break
        warm = min(1.0, (step + 1) / max(1, r["warmup_steps"]))
        lr_now = r["lr"] * warm * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * min(frac, 1.0))))
        for g in opt.param_groups:
            g["lr"] = lr_now
        try:
            batch = next(batches)
        except StopIteration:
            break
        images, targets = _to_torch(batch, int(r["size"]))
        losses = model(list(images), targets)
        loss = losses["classification"] + losses["bbox_regression"]
        if not torch.isfinite(loss):
            raise InputError(f"training diverged at step {step} (loss {float(loss)}); lower the learning rate")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
        opt.step()
        step += 1
        loss_value = float(loss.detach())
        ema = loss_value if ema is None else 0.9 * ema + 0.1 * loss_value
        rec = {"step": step, "loss": loss_value, "classification": float(losses["classification"].detach()),
               "bbox_regression": float(losses["bbox_regression"].detach()), "lr": lr_now,
               "wall_s": time.time() - t0, "cpu_s": time.process_time() - c0}
        history.append(rec)
        if on_step:
            on_step(rec, model)
        bar.set_postfix(loss=f"{ema:.3f}")
        bar.update(1 if budget_steps else max(0, int(rec["wall_s"]) - bar.n))
    bar.close()
    model.eval()
    info = {"recipe": recipe, "data": data_desc, "synthetic": samples is None, "steps": step,
            "batch_size": int(r["batch_size"]), "lr": r["lr"], "optimizer": "AdamW, warmup + cosine",
            "wall_seconds": round(time.time() - t0, 1), "cpu_seconds": round(time.process_time() - c0, 1),
            "threads": torch.get_num_threads(), "seed": seed, "init_weights": str(init_weights) if init_weights else None, "torch": torch.__version__,
            "final_loss_ema": ema, "host_cpus": os.cpu_count()}
    return TrainResult(model=model, arch=arch, classes=classes, history=history, info=info)


def save_history(history: list[dict], path: Path) -> None:
    import json

    Path(path).write_text(json.dumps(history) + "\n", encoding="utf-8")


MAX_COMMITTED_BYTES = 15 * 1024 * 1024
MAX_MAP_DROP = 0.02


def train_and_register(
    recipe: str = "demo",
    *,
    data: str | Path | None = None,
    fmt: str | None = None,
    images_dir: str | Path | None = None,
    classes=None,
    models_dir: str | Path = "models",
    name: str = "cxr-demo",
    version: str | None = None,
    weights: str = "auto",
    eval_n: int = 200,
    eval_size: int = 512,
    progress: bool | None = None,
    log: Callable[[str], None] = print,
    **train_kwargs,
) -> dict:
    """Train, export to ``models/<name>/<version>/``, evaluate, pick the weight storage, write the card.

    ``data`` None/"phantoms": phantoms on the fly (evaluated on ``eval_n`` held-out phantoms); else a COCO
    dir/JSON or a VinDr CSV (evaluated on a held-out 10%). ``weights="auto"``: the smallest of fp16/int8
    storage that fits 15 MB with an mAP@0.5 drop <= 0.02 against fp32, else fp32.
    Returns a report dict (also in metadata.json); the loss history goes to ``history.json``.
    """
    import datetime as _dt

    from cxr.model.datasets import read_dataset
    from cxr.model.registry import list_versions

    models_dir = Path(models_dir)
    if version is None:
        version = _dt.datetime.now(_dt.timezone.utc).strftime("%Y.%m.%d.%H%M")
    out_dir = models_dir / name / version
    if version in list_versions(models_dir, name):
        raise InputError(f"{out_dir} already exists; choose another --version")
    samples = eval_samples = None
    if data not in (None, "phantoms", "phantom"):
        all_samples = read_dataset(Path(data), fmt, images_dir=images_dir, classes=classes)
        if not all_samples:
            raise InputError(f"{data}: no images")
        classes = all_samples[0].classes
        rng = np.random.default_rng(0)
        idx = rng.permutation(len(all_samples))
        n_eval = max(1, len(all_samples) // 10) if len(all_samples) > 1 else 0
        eval_samples = [all_samples[i] for i in idx[:n_eval]]
        samples = [all_samples[i] for i in idx[n_eval:]] or all_samples
    res = train(recipe, classes=classes, samples=samples, progress=progress, **train_kwargs)
    return register(res, out_dir, name=name, version=version, weights=weights, eval_samples=eval_samples,
                    eval_n=eval_n, eval_size=eval_size, progress=progress, log=log, data_desc=str(data))


def register(res: TrainResult, out_dir: Path, *, name: str, version: str, weights: str = "auto",
             eval_samples=None, eval_n: int = 200, eval_size: int = 512, progress: bool | None = None,
             log: Callable[[str], None] = print, data_desc: str = "") -> dict:
    """Export a trained model to ``out_dir``, evaluate fp32 and compressed storage, keep the chosen one."""
    from cxr.model.evaluate import evaluate_phantoms, evaluate_samples
    from cxr.model.export import build_metadata, compress_weights, export_onnx, write_metadata
    from cxr.model.net import RawRetinaNet
    from cxr.model.predict import OnnxPredictor

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.save(res.model.state_dict(), out_dir / "model.pt")
    save_history(res.history, out_dir / "history.json")
    fp32_path = export_onnx(RawRetinaNet(res.model), int(res.arch["input_size"]), out_dir / "model.fp32.onnx")

    def meta_for(onnx_path: Path, storage: str, metrics: dict | None) -> dict:
        return build_metadata(name=name, version=version, classes=res.classes, arch=res.arch, onnx_path=onnx_path,
                              weights_storage=storage, torch_path=out_dir / "model.pt", training=res.info,
                              metrics=metrics)

    def evaluate(onnx_path: Path, storage: str) -> dict:
        pred = OnnxPredictor(out_dir, meta_for(onnx_path, storage, None), onnx_file=onnx_path.name)
        if eval_samples is None:
            return evaluate_phantoms(pred, eval_n, eval_size, progress=progress)
        return evaluate_samples(pred, eval_samples, progress=progress, dataset=f"held-out 10% of {data_desc}")

    log(f"trained {res.info['steps']} steps in {res.info['wall_seconds'] / 60:.1f} wall min "
        f"({res.info['cpu_seconds'] / 60:.1f} CPU min); evaluating fp32")
    m32 = evaluate(fp32_path, "fp32")
    log(f"fp32: mAP@0.5 {m32['map50']:.3f}, {fp32_path.stat().st_size / 1e6:.1f} MB")
    chosen, chosen_path, chosen_metrics = "fp32", fp32_path, m32
    tried = {"fp32": {"bytes": fp32_path.stat().st_size, "map50": m32["map50"]}}
    candidates = ["fp16", "int8"] if weights == "auto" else ([] if weights == "fp32" else [weights])
    for storage in candidates:
        path = compress_weights(fp32_path, out_dir / f"model.{storage}.onnx", storage)
        size = path.stat().st_size
        if weights == "auto" and size > MAX_COMMITTED_BYTES:
            tried[storage] = {"bytes": size, "skipped": "over 15 MB"}
            path.unlink()
            continue
        m = evaluate(path, storage)
        tried[storage] = {"bytes": size, "map50": m["map50"]}
        log(f"{storage}: mAP@0.5 {m['map50']:.3f} (drop {m32['map50'] - m['map50']:+.3f}), {size / 1e6:.1f} MB")
        if weights != "auto" or m32["map50"] - m["map50"] <= MAX_MAP_DROP:
            chosen, chosen_path, chosen_metrics = storage, path, m
            break
        path.unlink()
    final = out_dir / "model.onnx"
    chosen_path.replace(final)
    for p in out_dir.glob("model.*.onnx"):
        p.unlink()
    metrics = dict(chosen_metrics)
    metrics["fp32_map50"] = m32["map50"]
    metrics["weight_storage_trials"] = tried
    meta = meta_for(final, chosen, metrics)
    write_metadata(out_dir, meta)
    return {"model_dir": str(out_dir), "weights": chosen, "bytes": final.stat().st_size, "metrics": metrics,
            "training": res.info, "history": res.history}
