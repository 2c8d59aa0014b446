"""Detector inference latency: ONNX Runtime + numpy decode vs torchvision eager (same weights).

Single-image latency, median over repeated runs, for 512 and 1024 px inputs (the model letterboxes
them to its input size). Both sides do the whole job: resize, network, decode, class-wise NMS.
Variants of the ONNX path: graph optimization levels, thread counts, weight storage (fp32 / int8
weights) and ONNX Runtime dynamic quantization, each with its mAP@0.5 checked on held-out phantoms.

    .venv/bin/python benchmarks/bench_inference.py [--model-dir models/cxr-demo/1.0.0] [--repeats 30] [--map-n 100]

Run it on an otherwise idle machine for meaningful numbers; results go to stdout (markdown) and
benchmarks/out/bench_inference.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path



def median_ms(fn, repeats: int, warmup: int = 3) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model-dir", type=Path, default=None, help="default: the registry's latest cxr-demo")
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--sizes", type=int, nargs="+", default=[512, 1024])
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--map-n", type=int, default=100, help="held-out phantoms per mAP check (0: skip)")
    ap.add_argument("--static-dir", type=Path, default=Path("models/cxr-demo/1.1.0"),
                    help="a statically quantized (int8 QDQ) registry version to compare; '' to skip")
    ap.add_argument("--skip-slow", action="store_true", help="leave out the variants measured slower before "
                    "(opt=basic/disable, dynamic quantization)")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/out/bench_inference.json"))
    args = ap.parse_args()

    import torch

    from cxr.config import get_settings
    from cxr.model.evaluate import EVAL_SEED_BASE, EvalItem, evaluate_items
    from cxr.model.export import compress_weights, export_onnx
    from cxr.model.net import RawRetinaNet, build_retinanet
    from cxr.model.phantoms import generate_phantom
    from cxr.model.predict import OnnxPredictor
    from cxr.model.registry import read_metadata, resolve_model_dir

    s = get_settings()
    model_dir = args.model_dir or resolve_model_dir(s.models_dir, s.model_name, s.model_version)
    meta = read_metadata(model_dir)
    classes = tuple(meta.classes)
    net = build_retinanet(meta.arch, len(classes)).eval()
    pt = model_dir / (meta.torch.file if meta.torch is not None else "model.pt")
    trained_torch = pt.is_file()
    if trained_torch:
        net.load_state_dict(torch.load(pt, map_location="cpu", weights_only=True))
    work = Path(tempfile.mkdtemp(prefix="cxr-bench-"))
    # variants need the fp32 graph: export it from the torch weights (same weights as the torch baseline)
    fp32 = export_onnx(RawRetinaNet(net), int(meta.arch.input_size), work / "model.fp32.onnx")
    int8 = compress_weights(fp32, work / "model.int8.onnx", "int8")
    from onnxruntime.quantization import QuantType, quantize_dynamic

    dyn = work / "model.dynq.onnx"
    try:
        quantize_dynamic(str(fp32), str(dyn), weight_type=QuantType.QInt8, per_channel=True)
    except Exception as exc:  # noqa: BLE001 - report and go on
        print(f"dynamic quantization failed: {exc}")
        dyn = None

    def onnx_pred(file: Path, threads: int, level: str = "all", config: dict | None = None) -> OnnxPredictor:
        d = work / f"{file.stem}-{threads}-{level}-{len(config or {})}"
        d.mkdir(exist_ok=True)
        (d / "model.onnx").write_bytes(file.read_bytes())
        return OnnxPredictor(d, meta, threads=threads, opt_level=level, onnx_file="model.onnx", session_config=config)

    images = {sz: generate_phantom(EVAL_SEED_BASE + 7, sz, classes).as_float() for sz in args.sizes}
    results = {"model": f"{meta.name} {meta.version}", "input_size": meta.input.size,
               "torch_weights": "trained" if trained_torch else "random (no model.pt; latency only)",
               "repeats": args.repeats, "latency_ms": {}, "map50": {}}

    def torch_fn(img, threads):
        x = torch.from_numpy(img)[None]

        def run():
            torch.set_num_threads(threads)
            with torch.inference_mode():
                net([x])
        return run

    no_spin = {"session.intra_op.allow_spinning": "0"}
    variants = [("ort fp32 opt=all", fp32, "all", None), ("ort int8-weights opt=all", int8, "all", None)]
    if not args.skip_slow:
        variants += [("ort fp32 opt=basic", fp32, "basic", None), ("ort fp32 opt=disable", fp32, "disable", None)]
    if dyn is not None and not args.skip_slow:
        variants.append(("ort dynamic-quant opt=all", dyn, "all", None))
    variants.append(("ort fp32 opt=all, no spinning", fp32, "all", no_spin))
    variants.append((f"ort {meta.version} as served ({meta.onnx.weights}-stored, expanded)", model_dir / meta.onnx.file,
                     "all", None))
    if args.static_dir and (args.static_dir / "model.onnx").is_file():
        static = args.static_dir / "model.onnx"
        variants += [("ort static int8 QDQ opt=all", static, "all", None),
                     ("ort static int8 QDQ opt=all, no spinning", static, "all", no_spin),
                     ("ort static int8 QDQ opt=extended", static, "extended", None)]
    lat = results["latency_ms"]
    for threads in args.threads:
        preds = {name: onnx_pred(f, threads, lvl, cfg) for name, f, lvl, cfg in variants}
        for sz, img in images.items():
            key = f"{sz}px/{threads}t"
            lat[key] = {"torch eager (torchvision RetinaNet)": median_ms(torch_fn(img, threads), args.repeats)}
            for name, p in preds.items():
                lat[key][name] = median_ms(lambda p=p, img=img: p.predict(img, score_thr=0.05), args.repeats)
            base = lat[key]["torch eager (torchvision RetinaNet)"]
            print(f"{key}: torch {base:.1f} ms | " + " | ".join(
                f"{n} {v:.1f} ms ({base / v:.2f}x)" for n, v in lat[key].items() if n.startswith("ort")), flush=True)

    if args.map_n and trained_torch:
        phantoms = [generate_phantom(EVAL_SEED_BASE + i, 512, classes) for i in range(args.map_n)]

        def m50(predict) -> float:
            items = [EvalItem(p.boxes, p.labels, predict(p.as_float()), p.width, p.height) for p in phantoms]
            return evaluate_items(items, classes)["map50"]

        from cxr.model.predict import TorchPredictor
        from cxr.model.postprocess import Detections

        def torch_predict(img):
            with torch.inference_mode():
                o = net([torch.from_numpy(img)[None]])[0]
            return Detections(o["boxes"].numpy(), o["scores"].numpy(), o["labels"].numpy(),
                              [classes[i] for i in o["labels"].numpy()])

        results["map50"]["torch eager (torchvision postprocess, score>0.05)"] = m50(torch_predict)
        for name, f, lvl, cfg in variants:
            p = onnx_pred(f, args.threads[-1], lvl, cfg)
            results["map50"][name] = m50(lambda img, p=p: p.predict(img, score_thr=0.05))
        results["map50"]["torch backend (same weights, numpy postprocess)"] = m50(
            lambda img, p=TorchPredictor(model_dir, meta, module=RawRetinaNet(net).eval()): p.predict(img, score_thr=0.05))
        for k, v in results["map50"].items():
            print(f"mAP@0.5 {k}: {v:.3f}")
    results["file_bytes"] = {"fp32": fp32.stat().st_size, "int8-weights": int8.stat().st_size,
                             "dynamic-quant": dyn.stat().st_size if dyn else None}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
