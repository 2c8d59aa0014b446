"""The fastest correct codecs for the per-image path: JPEG 2000 and JPEG-LS decode, the PNG rendition encode.

Both come from `imagecodecs <https://pypi.org/project/imagecodecs/>`_ (the ``app`` extra, beside
pylibjpeg), measured against the alternatives in ``benchmarks/bench_image_cost.py`` (figures in
docs/benchmarks.md):

- **JPEG 2000** (Part 1, lossless and lossy): OpenJPEG 2.5 through ``imagecodecs.jpeg2k_decode``,
  which decodes with several threads. It is registered as a pydicom decoding *plugin*
  (:data:`PLUGIN`), so pydicom still parses the codestream header and applies its own corrections
  (J2K precision and signedness against the dataset's); the pixels are the same as pydicom's
  default pylibjpeg-openjpeg plugin gives (tested), only faster with more than one thread.
- **JPEG-LS** (lossless and near-lossless): CharLS through ``imagecodecs.jpegls_decode``, through the
  same plugin: about 4.5x faster than pydicom's default (pylibjpeg-libjpeg) on a 2k x 2k image, the
  same pixels (tested).
- RLE, JPEG and the other syntaxes stay with pydicom's default (pylibjpeg), already the fastest
  correct decoder measured for them (a lossy JPEG decoded by another library differs by rounding).
- **PNG**: ``imagecodecs.png_encode`` with zlib level 1, the RLE strategy and the Sub filter:
  lossless like any PNG (the decoded pixels are identical; tested), about 5x faster than Pillow's
  ``compress_level=3`` on a 2k x 2k radiograph and no larger.

Without imagecodecs both fall back to what pydicom and Pillow do by themselves.
"""

from __future__ import annotations

import io
import os

import numpy as np
from PIL import Image
from pydicom import uid
from pydicom.pixels.decoders.base import DecodeRunner, get_decoder

try:  # the `app` extra; the core install decodes with pydicom's own plugins and encodes with Pillow
    import imagecodecs
except ImportError:  # pragma: no cover - exercised on installs without the app extra
    imagecodecs = None

#: pydicom's name for the imagecodecs JPEG 2000 plugin registered here.
PLUGIN = "cxr-imagecodecs"
#: The syntaxes it decodes: JPEG 2000 Part 1 (HTJ2K stays with pydicom's pylibjpeg plugin) and JPEG-LS.
J2K_SYNTAXES = (uid.JPEG2000Lossless, uid.JPEG2000)
JLS_SYNTAXES = (uid.JPEGLSLossless, uid.JPEGLSNearLossless)
SYNTAXES = J2K_SYNTAXES + JLS_SYNTAXES
DECODER_DEPENDENCIES = {ts: ("imagecodecs>=2024.1",) for ts in SYNTAXES}
#: The option that carries the thread count from :func:`decoding_options` to :func:`decode_frame`.
THREADS_OPTION = "cxr_threads"

_PNG_LEVEL, _PNG_RLE, _PNG_SUB = 1, 3, 16  # zlib level, Z_RLE, PNG_FILTER_SUB


def is_available(transfer_syntax: str) -> bool:
    """pydicom's plugin hook: imagecodecs is installed with the codec this syntax needs."""
    if imagecodecs is None:
        return False
    if transfer_syntax in J2K_SYNTAXES:
        return bool(imagecodecs.JPEG2K.available)
    return transfer_syntax in JLS_SYNTAXES and bool(imagecodecs.JPEGLS.available)


def decode_frame(src: bytes, runner: DecodeRunner) -> bytes:
    """pydicom's plugin hook: one frame's codestream -> its pixels, in a container sized by its precision
    (as pydicom's pylibjpeg plugin returns them, so pydicom's own corrections apply unchanged)."""
    if runner.transfer_syntax in JLS_SYNTAXES:
        arr = imagecodecs.jpegls_decode(src)
        runner.set_option("planar_configuration", 0)  # CharLS returns colour-by-pixel
    else:
        threads = int(runner.get_option(THREADS_OPTION, 1) or 1)
        arr = imagecodecs.jpeg2k_decode(src, numthreads=max(1, threads))
        if runner.photometric_interpretation in ("YBR_ICT", "YBR_RCT"):  # OpenJPEG applies the inverse MCT
            runner.set_option("photometric_interpretation", "RGB")
    runner.set_option("bits_allocated", arr.dtype.itemsize * 8)
    return arr.tobytes()


def register() -> None:
    """Add the plugin to pydicom's JPEG 2000 decoders once (a no-op without imagecodecs)."""
    if imagecodecs is None:
        return
    for ts in SYNTAXES:
        decoder = get_decoder(ts)
        known = (*decoder.available_plugins, *(m.split(" ")[0] for m in decoder.missing_dependencies))
        if PLUGIN not in known:
            decoder.add_plugin(PLUGIN, (__name__, "decode_frame"))


def cpu_count() -> int:
    """Cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def decoding_options(transfer_syntax: str, threads: int) -> dict[str, object]:
    """pydicom ``as_array`` options for the fastest correct decoder of ``transfer_syntax``.

    ``threads`` 0 means every core of this process (JPEG 2000; CharLS decodes on one). Empty for
    syntaxes pydicom decodes best itself.
    """
    if transfer_syntax not in SYNTAXES or not is_available(transfer_syntax):
        return {}
    register()
    return {"decoding_plugin": PLUGIN, THREADS_OPTION: threads if threads > 0 else cpu_count()}


def encode_png_grey(u8: np.ndarray) -> bytes:
    """An 8-bit greyscale PNG of ``u8`` (lossless; fast settings when imagecodecs is there)."""
    if imagecodecs is not None and imagecodecs.PNG.available:
        return bytes(imagecodecs.png_encode(np.ascontiguousarray(u8), level=_PNG_LEVEL, strategy=_PNG_RLE,
                                            filter=_PNG_SUB))
    buf = io.BytesIO()
    Image.fromarray(u8, "L").save(buf, format="PNG", compress_level=3)
    return buf.getvalue()
