"""The fast per-image path changes no pixel: the imagecodecs JPEG 2000 plugin against pydicom's default
decoder, the display lookup table against the per-pixel arithmetic, the fast PNG rendition against
Pillow's, with one thread and with several."""

from __future__ import annotations

import io

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import JPEG2000, ExplicitVRLittleEndian, JPEG2000Lossless, generate_uid

from cxr.model import codecs
from cxr.model.pixels import _display, decode_stored, dicom_to_array, to_uint8

pytestmark = pytest.mark.unit

needs_imagecodecs = pytest.mark.skipif(codecs.imagecodecs is None, reason="imagecodecs (the app extra) is not installed")


def _dataset(pixels: np.ndarray, *, bits_stored: int, signed: bool = False, photometric: str = "MONOCHROME2",
             syntax: str | None = None, **tags: object) -> Dataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality = "DX"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.Rows, ds.Columns = pixels.shape
    ds.BitsAllocated = pixels.dtype.itemsize * 8
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelRepresentation = int(signed)
    ds.PixelData = pixels.tobytes()
    for k, v in tags.items():
        setattr(ds, k, v)
    if syntax is not None:
        kw = {"j2k_cr": [20]} if syntax == JPEG2000 else {}
        ds.compress(syntax, pixels, encoding_plugin="pylibjpeg", **kw)
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return pydicom.dcmread(io.BytesIO(buf.getvalue()))


def _noise(shape: tuple[int, int], bits: int, signed: bool = False, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]]
    smooth = (xx + yy) / (shape[0] + shape[1])
    top = 2**bits - 1
    vals = np.clip(np.round(smooth * top + rng.normal(0, top / 30, shape)), 0, top)
    if signed:
        vals = vals - 2 ** (bits - 1)
        return vals.astype(np.int16 if bits > 8 else np.int8)
    return vals.astype(np.uint16 if bits > 8 else np.uint8)


@needs_imagecodecs
@pytest.mark.parametrize(("bits", "signed", "syntax"), [
    (8, False, JPEG2000Lossless), (12, False, JPEG2000Lossless), (16, False, JPEG2000Lossless),
    (12, True, JPEG2000Lossless), (12, False, JPEG2000),
])
@pytest.mark.parametrize("threads", [1, 2])
def test_the_imagecodecs_plugin_decodes_what_pydicoms_default_does(bits, signed, syntax, threads):
    ds = _dataset(_noise((96, 80), bits, signed), bits_stored=bits, signed=signed, syntax=syntax)
    assert codecs.decoding_options(ds.file_meta.TransferSyntaxUID, threads)["decoding_plugin"] == codecs.PLUGIN
    fast = decode_stored(ds, threads)
    default = pydicom.dcmread(io.BytesIO(_bytes(ds))).pixel_array  # pydicom's own choice (pylibjpeg)
    assert fast.dtype == default.dtype and np.array_equal(fast, default)


def _bytes(ds: Dataset) -> bytes:
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


@pytest.mark.parametrize(("case", "bits", "signed", "photometric", "tags"), [
    ("plain", 12, False, "MONOCHROME2", {}),
    ("inverted", 12, False, "MONOCHROME1", {}),
    ("rescaled", 12, False, "MONOCHROME2", {"RescaleSlope": 0.5, "RescaleIntercept": -100}),
    ("window", 12, False, "MONOCHROME2", {"WindowCenter": 1800, "WindowWidth": 1200}),
    ("signed-window", 16, True, "MONOCHROME2", {"WindowCenter": 0, "WindowWidth": 20000, "RescaleSlope": 1,
                                                "RescaleIntercept": 0}),
    ("signed-rescaled", 16, True, "MONOCHROME1", {"RescaleSlope": 2, "RescaleIntercept": 5}),
    ("8-bit", 8, False, "MONOCHROME2", {}),
])
def test_the_display_lut_gives_the_per_pixel_arithmetic_bit_for_bit(case, bits, signed, photometric, tags):
    ds = _dataset(_noise((64, 72), bits, signed, seed=3), bits_stored=bits, signed=signed, photometric=photometric,
                  **tags)
    expected = _display(ds.pixel_array, ds, bits)  # every pixel through float64, the way it always was
    got = dicom_to_array(ds)
    assert got.dtype == np.float32 and got.flags.c_contiguous
    assert np.array_equal(got, expected), case


def test_a_voi_lut_sequence_goes_through_the_lut_too():
    from pydicom.sequence import Sequence

    ds = _dataset(_noise((40, 40), 12, seed=5), bits_stored=12)
    item = Dataset()
    item.LUTDescriptor = [4096, 0, 8]
    item.LUTData = [int(v) for v in np.linspace(0, 255, 4096).astype(np.uint16)]
    ds.VOILUTSequence = Sequence([item])
    assert np.array_equal(dicom_to_array(ds), _display(ds.pixel_array, ds, 12))


@needs_imagecodecs
def test_the_fast_png_rendition_has_exactly_the_pixels_of_pillows():
    u8 = to_uint8(dicom_to_array(_dataset(_noise((300, 257), 12, seed=9), bits_stored=12)))
    fast = codecs.encode_png_grey(u8)
    pillow = io.BytesIO()
    Image.fromarray(u8, "L").save(pillow, format="PNG", compress_level=3)
    for data in (fast, pillow.getvalue()):
        im = Image.open(io.BytesIO(data))
        assert im.mode == "L" and np.array_equal(np.asarray(im), u8)


def test_without_imagecodecs_pydicom_and_pillow_do_it(monkeypatch):
    monkeypatch.setattr(codecs, "imagecodecs", None)
    assert codecs.decoding_options(JPEG2000Lossless, 2) == {}
    ds = _dataset(_noise((48, 40), 12), bits_stored=12, syntax=JPEG2000Lossless)
    arr = dicom_to_array(ds)
    assert np.array_equal(arr, _display(ds.pixel_array, ds, 12))
    u8 = to_uint8(arr)
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(codecs.encode_png_grey(u8)))), u8)


@needs_imagecodecs
@pytest.mark.parametrize(("bits", "signed", "near"), [(8, False, 0), (12, False, 0), (16, False, 0), (12, True, 0),
                                                      (12, False, 2)])
def test_the_plugin_decodes_jpeg_ls_as_pylibjpeg_does(bits, signed, near):
    from pydicom.encaps import encapsulate
    from pydicom.pixels.decoders.base import get_decoder
    from pydicom.uid import JPEGLSLossless, JPEGLSNearLossless

    pixels = _noise((90, 70), bits, signed, seed=11)
    ds = _dataset(pixels, bits_stored=bits, signed=signed)
    syntax = JPEGLSNearLossless if near else JPEGLSLossless
    unsigned = pixels.view(np.dtype(f"u{pixels.dtype.itemsize}")) & ((1 << bits) - 1) if signed else pixels
    ds.PixelData = encapsulate([bytes(codecs.imagecodecs.jpegls_encode(unsigned, level=near))])
    ds.file_meta.TransferSyntaxUID = syntax
    ds = pydicom.dcmread(io.BytesIO(_bytes(ds)))
    assert codecs.decoding_options(syntax, 1)["decoding_plugin"] == codecs.PLUGIN
    fast = decode_stored(ds, 1)
    default = get_decoder(syntax).as_array(pydicom.dcmread(io.BytesIO(_bytes(ds))), decoding_plugin="pylibjpeg")[0]
    assert fast.dtype == default.dtype and np.array_equal(fast, default)
    if not near and not signed:  # (a signed test image's sign depends on the precision the encoder wrote)
        assert np.array_equal(fast, pixels)
