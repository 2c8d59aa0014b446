"""At least 30 kinds of bad input: each is refused with one clear line and nothing is stored."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pydicom
import pytest
from ingest_factory import count_rows, gradient, jpeg_bytes, lake_keys, make_dicom, png_bytes
from PIL import Image

from cxr.errors import InputError
from cxr.ingest.decode import decode_upload

pytestmark = pytest.mark.unit


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose IHDR claims width x height, with one empty IDAT."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(b"")) + _chunk(b"IEND", b"")


def png_bomb(side: int = 9000) -> bytes:
    """A valid greyscale PNG of side x side zeros: about 80 kB that inflate to side^2 bytes."""
    comp = zlib.compressobj(9)
    row = b"\x00" * (side + 1)
    body = b"".join(comp.compress(row) for _ in range(side)) + comp.flush()
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", body) + _chunk(b"IEND", b"")


def jpeg_huge_dims() -> bytes:
    data = bytearray(jpeg_bytes(gradient()))
    i = data.index(b"\xff\xc0")  # SOF0: FFC0 len(2) precision(1) height(2) width(2)
    data[i + 5:i + 9] = struct.pack(">HH", 60000, 60000)
    return bytes(data)


def png_bad_crc() -> bytes:
    data = bytearray(png_bytes(gradient()))
    i = data.index(b"IDAT") + 20
    data[i] ^= 0xFF
    return bytes(data)


def pil_bytes(im: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt, **kw)
    return buf.getvalue()


def colour_rgb() -> np.ndarray:
    g = gradient()
    return np.stack([g, g[::-1], 255 - g], -1).astype(np.uint8)


def apng() -> bytes:
    a, b = Image.fromarray(gradient()), Image.fromarray(255 - gradient())
    return pil_bytes(a, "PNG", save_all=True, append_images=[b])


def dicom_edit(**changes) -> bytes:
    ds = pydicom.dcmread(io.BytesIO(make_dicom()))
    for k, v in changes.items():
        setattr(ds, k, v)
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def dicom_undecodable() -> bytes:
    from pydicom.encaps import encapsulate
    from pydicom.uid import MPEG2MPML

    ds = pydicom.dcmread(io.BytesIO(make_dicom()))
    ds.PixelData = encapsulate([b"not really mpeg2" * 8])
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True
    ds.file_meta.TransferSyntaxUID = MPEG2MPML
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def dicom_float() -> bytes:
    ds = pydicom.dcmread(io.BytesIO(make_dicom(no_pixels=True)))
    ds.Rows, ds.Columns, ds.SamplesPerPixel, ds.PhotometricInterpretation = 32, 32, 1, "MONOCHROME2"
    ds.BitsAllocated = 32
    ds.FloatPixelData = np.zeros((32, 32), np.float32).tobytes()
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


GOOD_PNG = png_bytes(gradient())
GOOD_JPEG = jpeg_bytes(gradient())
GOOD_DCM = make_dicom()

#: (id, file name, bytes, a fragment of the expected one-line error)
CASES = [
    ("empty", "empty.png", b"", "empty file"),
    ("text-as-png", "notes.png", b"hello, this is not an image\n" * 20, "not an image"),
    ("html-as-png", "x.png", b"<html><script>alert(1)</script></html>", "HTML"),
    ("svg-as-png", "x.png", b'<svg xmlns="http://www.w3.org/2000/svg"></svg>', "SVG"),
    ("truncated-png", "t.png", GOOD_PNG[:120], "truncated PNG"),
    ("png-signature-only", "s.png", GOOD_PNG[:8], "corrupt PNG header"),
    ("png-bad-crc", "crc.png", png_bad_crc(), "PNG"),
    ("truncated-jpeg", "t.jpg", GOOD_JPEG[: len(GOOD_JPEG) // 3], "truncated JPEG"),
    ("jpeg-garbage", "g.jpg", b"\xff\xd8\xff" + bytes(range(256)) * 4, "corrupt JPEG"),
    ("decompression-bomb", "bomb.png", png_bomb(), "decompression-bomb"),
    ("huge-png-header", "huge.png", png_header_only(100_000, 100_000), "decompression-bomb"),
    ("huge-jpeg-header", "huge.jpg", jpeg_huge_dims(), "decompression-bomb"),
    ("tiny-image", "tiny.png", png_bytes(gradient(8, 8)), "at least 16"),
    ("too-many-bytes", "big.png", GOOD_PNG + b"\x00" * 3_000_000, "byte limit"),
    ("cmyk-jpeg", "cmyk.jpg", pil_bytes(Image.fromarray(colour_rgb()).convert("CMYK"), "JPEG"), "CMYK"),
    ("palette-png", "pal.png", pil_bytes(Image.fromarray(colour_rgb()).convert("P"), "PNG"), "palette"),
    ("1bit-png", "bw.png", pil_bytes(Image.fromarray(gradient()).convert("1"), "PNG"), "1-bit"),
    ("colour-png", "rgb.png", png_bytes(colour_rgb()), "colour image"),
    ("colour-jpeg", "rgb.jpg", jpeg_bytes(colour_rgb()), "colour image"),
    ("transparent-png", "rgba.png",
     png_bytes(np.dstack([np.stack([gradient()] * 3, -1), np.full(gradient().shape, 7, np.uint8)])), "transparent"),
    ("animated-png", "anim.png", apng(), "2 frames"),
    ("gif-as-png", "g.png", pil_bytes(Image.fromarray(gradient()), "GIF"), "GIF"),
    ("bmp", "x.bmp", pil_bytes(Image.fromarray(gradient()), "BMP"), "unsupported file type"),
    ("tiff-as-dcm", "x.dcm", pil_bytes(Image.fromarray(gradient()), "TIFF"), "TIFF"),
    ("zip-as-dcm", "x.dcm", b"PK\x03\x04" + b"\x00" * 200, "ZIP"),
    # A PNG named .jpg, a JPEG named .png or .dcm, a DICOM named .png: decoded by content since issue 11
    # (test_ingest_awkward.py); the extension alone never refuses an image.
    ("exe-extension", "x.exe", GOOD_PNG, "unsupported file type"),
    ("dicom-no-pixels", "nopix.dcm", make_dicom(no_pixels=True), "no pixel data"),
    ("dicom-float-pixels", "float.dcm", dicom_float(), "float pixels"),
    ("dicom-multiframe", "mf.dcm", make_dicom(frames=3), "multi-frame"),
    ("dicom-rgb", "rgb.dcm", make_dicom(samples=3), "colour DICOM"),
    ("dicom-palette-colour", "pal.dcm", dicom_edit(PhotometricInterpretation="PALETTE COLOR"), "colour DICOM"),
    ("dicom-truncated", "cut.dcm", GOOD_DCM[:-4000], "DICOM"),
    ("dicom-huge-dims", "huge.dcm", dicom_edit(Rows=60000, Columns=60000), "decompression-bomb"),
    ("dicom-garbage", "garbage.dcm", b"\x00" * 128 + b"DICM" + bytes(range(256)) * 3, "DICOM"),
    ("dicom-undecodable-syntax", "mpeg.dcm", dicom_undecodable(), "cannot decode DICOM pixel data"),
    ("dicom-32-bit", "b32.dcm", dicom_edit(BitsStored=32), "bits stored"),
    ("path-traversal", "../../etc/passwd.png", GOOD_PNG, "contains a path"),
    ("absolute-path", "/etc/cron.d/x.png", GOOD_PNG, "contains a path"),
    ("windows-traversal", "..\\..\\boot.png", GOOD_PNG, "contains a path"),
    ("nul-in-name", "a\x00.png", GOOD_PNG, "control characters"),
    ("newline-in-name", "a\nINFO forged log line.png", GOOD_PNG, "control characters"),
    ("overlong-name", "x" * 300 + ".png", GOOD_PNG, "longer than 255"),
    ("blank-name", "   ", GOOD_PNG, "empty file name"),
]


def test_at_least_30_kinds():
    assert len({c[0] for c in CASES}) == len(CASES) >= 30


@pytest.mark.parametrize(("name", "data", "fragment"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_refused_with_one_clear_line(make_settings, name, data, fragment):
    settings = make_settings(max_upload_bytes=2_000_000)
    with pytest.raises(InputError) as err:
        decode_upload(name, data, settings)
    msg = str(err.value)
    assert fragment.lower() in msg.lower(), msg
    assert "\n" not in msg and len(msg) < 300
    assert err.value.exit_code == 3


def test_bad_batch_stores_nothing(tmp_path, make_settings, sqlite_engine, local_lake, fake_predictor):
    """Every bad file that can exist on disk, in one batch: all rejected, no row, no object."""

    from cxr.ingest.pipeline import ingest_files

    settings = make_settings(max_upload_bytes=2_000_000)
    folder = tmp_path / "bad"
    folder.mkdir()
    files = []
    for i, (case, name, data, _frag) in enumerate(CASES):
        if "/" in name or "\\" in name or "\x00" in name or "\n" in name or len(name) > 200 or not name.strip():
            continue
        path = folder / f"{i:02d}-{name}"
        path.write_bytes(data)
        files.append(path)
    assert len(files) >= 30
    summary = ingest_files(files, settings, predictor=fake_predictor, engine=sqlite_engine, lake=local_lake,
                           progress=False)
    assert not summary.stored
    assert len(summary.rejected) == len(files)
    assert all(r.reason for r in summary.rejected)
    assert count_rows(sqlite_engine) == {"image": 0, "transaction": 0, "pred_bounding_box": 0}
    assert lake_keys(local_lake) == []
    assert fake_predictor.infer_calls == 0


def test_missing_and_oversized_files_are_rejected_unread(tmp_path, make_settings, sqlite_engine, local_lake,
                                                       fake_predictor):
    from cxr.ingest.pipeline import ingest_files

    settings = make_settings(max_upload_bytes=1000)
    big = tmp_path / "big.png"
    big.write_bytes(GOOD_PNG + b"\x00" * 2000)
    summary = ingest_files([tmp_path / "nope.png", big], settings, predictor=fake_predictor, engine=sqlite_engine,
                           lake=local_lake, progress=False)
    assert [r.reason for r in summary.rejected] == [
        "no such file", f"file is {big.stat().st_size:,} bytes, more than the 1,000-byte limit (CXR_MAX_UPLOAD_BYTES)"]
