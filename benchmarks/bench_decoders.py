"""Decoders available for each DICOM transfer syntax, on one full-size image: speed and correctness.

For every syntax cxr meets in a PACS export (JPEG 2000 lossless and lossy, JPEG-LS lossless, RLE,
JPEG baseline), the same 12-bit (8-bit for JPEG baseline) full-size phantom is encoded, then decoded
by every pydicom plugin that is installed for that syntax (``Decoder.as_array(decoding_plugin=...)``)
and, for JPEG 2000, by the codecs directly (imagecodecs with 1 and 2 threads, Pillow, and glymur,
OpenCV and GDCM when ``--extra-path`` has them). "correct" = the same pixels as the lossless original
(lossy: as pydicom's default plugin). Best of 3 after one warm-up.

    .venv/bin/python benchmarks/bench_decoders.py FILE.dcm [--extra-path /tmp/benchdeps]
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np


def best_of(fn: Callable[[], np.ndarray], n: int = 3) -> tuple[float, np.ndarray]:
    out = fn()
    times = []
    for _ in range(n):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return min(times), out


def _encode(ds_bytes: bytes, syntax: str, pixels: np.ndarray) -> object:
    """A dataset with ``pixels`` in ``syntax`` (imagecodecs encodes what pydicom has no encoder for)."""
    import imagecodecs
    import pydicom
    from pydicom.encaps import encapsulate
    from pydicom.uid import JPEG2000, JPEGBaseline8Bit, JPEGLSLossless

    ds = pydicom.dcmread(io.BytesIO(ds_bytes))
    ds.decompress()
    if syntax == JPEGBaseline8Bit:
        u8 = (pixels >> 4).astype(np.uint8)
        ds.BitsAllocated = ds.BitsStored = 8
        ds.HighBit = 7
        ds.PixelData = encapsulate([imagecodecs.jpeg8_encode(u8, level=92)])
        ds.file_meta.TransferSyntaxUID = syntax
        ds.LossyImageCompression = "01"
        return ds
    if syntax == JPEGLSLossless:
        ds.PixelData = encapsulate([imagecodecs.jpegls_encode(pixels)])
        ds.file_meta.TransferSyntaxUID = syntax
        return ds
    kw = {"j2k_cr": [15]} if syntax == JPEG2000 else {}
    ds.compress(syntax, pixels, encoding_plugin="pylibjpeg" if "1.2.840.10008.1.2.4.9" in syntax else "", **kw)
    return ds


def compare_decoders(j2k_file: Path, extra_path: str | None = None) -> dict:
    import pydicom
    from pydicom.encaps import generate_frames
    from pydicom.pixels.decoders.base import get_decoder
    from pydicom.uid import JPEG2000, JPEG2000Lossless, JPEGBaseline8Bit, JPEGLSLossless, RLELossless

    from cxr.model import codecs

    if extra_path:
        sys.path.append(extra_path)
    codecs.register()
    warnings.simplefilter("ignore")
    raw = j2k_file.read_bytes()
    original = pydicom.dcmread(io.BytesIO(raw)).pixel_array
    results: dict[str, list[dict]] = {}
    for syntax in (JPEG2000Lossless, JPEG2000, JPEGLSLossless, RLELossless, JPEGBaseline8Bit):
        try:
            ds = _encode(raw, syntax, original)
        except Exception as exc:  # noqa: BLE001 - an encoder this machine lacks: say so
            results[syntax.name] = [{"decoder": "(could not encode)", "error": str(exc)[:120]}]
            continue
        buf = io.BytesIO()
        ds.save_as(buf, enforce_file_format=True)
        data = buf.getvalue()
        decoder = get_decoder(syntax)
        reference = original if syntax not in (JPEG2000, JPEGBaseline8Bit) else \
            decoder.as_array(pydicom.dcmread(io.BytesIO(data)))[0]
        rows = []
        for plugin in decoder.available_plugins:
            opts = [{}] if plugin != codecs.PLUGIN else [{codecs.THREADS_OPTION: 1}, {codecs.THREADS_OPTION: 2}]
            for extra in opts:
                label = f"pydicom plugin {plugin}" + (f" ({extra[codecs.THREADS_OPTION]} threads)" if extra else "")
                try:
                    s, arr = best_of(lambda p=plugin, e=extra: decoder.as_array(pydicom.dcmread(io.BytesIO(data)),
                                                                             decoding_plugin=p, **e)[0])
                    rows.append({"decoder": label, "ms": round(s * 1000, 1), "correct": bool(np.array_equal(arr, reference))})
                except Exception as exc:  # noqa: BLE001 - a plugin that cannot decode this: say so
                    rows.append({"decoder": label, "error": type(exc).__name__})
        if syntax in (JPEG2000Lossless, JPEG2000):
            frame = next(generate_frames(ds.PixelData, number_of_frames=1))
            rows += _direct_j2k(frame, reference)
        results[syntax.name] = rows
    return results


def _direct_j2k(frame: bytes, reference: np.ndarray) -> list[dict]:
    """The codecs called directly on the J2K codestream (and the parsing cost pydicom adds, by difference)."""
    cands: list[tuple[str, Callable[[], np.ndarray]]] = []
    import imagecodecs
    import openjpeg

    cands += [("pylibjpeg-openjpeg decode()", lambda: openjpeg.decode(frame))]
    cands += [(f"imagecodecs.jpeg2k_decode ({n} threads)", lambda n=n: imagecodecs.jpeg2k_decode(frame, numthreads=n))
              for n in (1, 2)]
    from PIL import Image

    cands.append(("Pillow (OpenJPEG)", lambda: np.asarray(Image.open(io.BytesIO(frame)))))
    try:
        import glymur

        tmp = Path("/tmp/cxr-bench-frame.j2k")
        tmp.write_bytes(frame)
        for n in (1, 2):
            cands.append((f"glymur ({n} threads, libopenjp2 {glymur.version.openjpeg_version})",
                          lambda n=n: (glymur.set_option("lib.num_threads", n), glymur.Jp2k(str(tmp))[:])[1]))
    except ImportError:
        pass
    try:
        import cv2

        buf = np.frombuffer(frame, np.uint8)
        cands.append((f"OpenCV {cv2.__version__} imdecode", lambda: cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)))
    except ImportError:
        pass
    rows = []
    for label, fn in cands:
        try:
            s, arr = best_of(fn)
            arr = np.asarray(arr)
            ok = arr.shape == reference.shape and np.array_equal(arr.astype(reference.dtype), reference)
            rows.append({"decoder": label, "ms": round(s * 1000, 1), "correct": bool(ok),
                         **({} if ok else {"why": f"dtype {arr.dtype}, shape {arr.shape}"})})
        except Exception as exc:  # noqa: BLE001 - report and go on
            rows.append({"decoder": label, "error": f"{type(exc).__name__}: {str(exc)[:80]}"})
    return rows


def print_decoders(results: dict) -> None:
    for syntax, rows in results.items():
        print(f"\n{syntax}")
        for r in rows:
            if "ms" in r:
                print(f"  {r['decoder']:<58} {r['ms']:8.1f} ms  {'correct' if r['correct'] else 'WRONG ' + r.get('why', '')}")
            else:
                print(f"  {r['decoder']:<58} {r.get('error', '')}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("file", type=Path, help="a full-size JPEG 2000 DICOM (bench_image_cost.py makes them)")
    ap.add_argument("--extra-path", default=None)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/out/bench_decoders.json"))
    a = ap.parse_args()
    results = compare_decoders(a.file, a.extra_path)
    print_decoders(results)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
