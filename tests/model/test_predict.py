"""Serving: ONNX outputs match torch, the onnx path never imports torch, bad model files and images fail clearly."""

import json
import subprocess
import sys

import numpy as np
import pytest

from cxr.errors import ConfigError, InputError
from cxr.model.predict import OnnxPredictor, TorchPredictor, clear_cache, load_predictor
from cxr.model.registry import read_metadata

pytestmark = pytest.mark.unit


@pytest.fixture(autouse=True)
def _fresh_cache():
    clear_cache()
    yield
    clear_cache()


def test_onnx_outputs_match_torch(tiny_model_dir):
    onnx_p = load_predictor(model_dir=tiny_model_dir, backend="onnx")
    torch_p = load_predictor(model_dir=tiny_model_dir, backend="torch")
    assert isinstance(onnx_p, OnnxPredictor) and isinstance(torch_p, TorchPredictor)
    img = np.random.default_rng(0).uniform(0, 1, (80, 50)).astype(np.float32)
    a, b = onnx_p.infer(img), torch_p.infer(img)
    np.testing.assert_allclose(a.cls_logits, b.cls_logits, atol=1e-3, rtol=1e-3)
    np.testing.assert_allclose(a.box_deltas, b.box_deltas, atol=1e-3, rtol=1e-3)
    da, db = onnx_p.postprocess(a, score_thr=0.3), torch_p.postprocess(b, score_thr=0.3)
    assert len(da) == len(db) > 0
    np.testing.assert_allclose(da.boxes, db.boxes, atol=0.05)
    assert (da.boxes[:, 2] <= 50).all() and (da.boxes[:, 3] <= 80).all()  # original pixels


@pytest.mark.parametrize("storage,tol", [("fp16", 0.05), ("int8", 0.5)])
def test_compressed_weights_stay_close(tiny_model_dir, tmp_path, storage, tol):
    from cxr.model.export import compress_weights

    dst = compress_weights(tiny_model_dir / "model.onnx", tmp_path / f"m.{storage}.onnx", storage)
    assert dst.stat().st_size < (tiny_model_dir / "model.onnx").stat().st_size * (0.6 if storage == "fp16" else 0.35)
    meta = read_metadata(tiny_model_dir)
    ref = OnnxPredictor(tiny_model_dir, meta)
    (tmp_path / "model.onnx").write_bytes(dst.read_bytes())
    comp = OnnxPredictor(tmp_path, meta, onnx_file="model.onnx")
    img = np.random.default_rng(1).uniform(0, 1, (64, 64)).astype(np.float32)
    np.testing.assert_allclose(comp.infer(img).cls_logits, ref.infer(img).cls_logits, atol=tol)


def test_predictor_properties_and_cache(tiny_model_dir):
    p = load_predictor(model_dir=tiny_model_dir)
    assert p is load_predictor(model_dir=tiny_model_dir)  # loaded once per process
    assert p.classes == ("Aortic enlargement", "Cardiomegaly", "ILD", "Infiltration", "Nodule/Mass")
    assert (p.model_name, p.model_version) == ("cxr-tiny", "0.1.0")
    assert "NOT FOR CLINICAL USE" in p.card_markdown and "synthetic" in p.card_markdown
    raw = p.infer(np.zeros((30, 40), np.float32))
    assert len(p.postprocess(raw, score_thr=0.99)) <= len(p.postprocess(raw, score_thr=0.2))


def test_registry_latest_and_missing(tiny_model_dir, make_settings):
    root = tiny_model_dir.parent.parent
    s = make_settings(models_dir=root, model_name="cxr-tiny")
    assert load_predictor(s).model_version == "0.1.0"
    with pytest.raises(ConfigError, match="CXR_MODEL_VERSION"):
        load_predictor(make_settings(models_dir=root, model_name="cxr-tiny", model_version="9.9"))
    with pytest.raises(ConfigError, match="CXR_MODEL_NAME"):
        load_predictor(make_settings(models_dir=root, model_name="nope"))


def test_registry_version_order():
    from cxr.model.registry import version_key

    assert sorted(["1.10.0", "1.9.0", "0.0.1", "1.2"], key=version_key) == ["0.0.1", "1.2", "1.9.0", "1.10.0"]


def test_onnx_serving_path_never_imports_torch(tiny_model_dir):
    code = (
        "import sys, numpy as np\n"
        "import cxr.model.predict as P, cxr.model.postprocess, cxr.model.evaluate\n"
        f"p = P.load_predictor(model_dir={str(tiny_model_dir)!r}, backend='onnx')\n"
        "d = p.predict(np.random.rand(100, 90).astype(np.float32), score_thr=0.2)\n"
        "assert len(d) > 0, 'no detections'\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
        "print('ok', len(d))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("ok")


def test_truncated_model_file(model_copy):
    path = model_copy / "model.onnx"
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(InputError, match="bytes, metadata says"):
        load_predictor(model_dir=model_copy)


def test_corrupt_model_file_same_size(model_copy):
    path = model_copy / "model.onnx"
    data = bytearray(path.read_bytes())
    data[100:200] = b"\xff" * 100
    path.write_bytes(bytes(data))
    with pytest.raises(InputError, match="checksum"):
        load_predictor(model_dir=model_copy)


def test_garbage_model_file_without_checksum(model_copy):
    meta = json.loads((model_copy / "metadata.json").read_text())
    (model_copy / "model.onnx").write_bytes(b"not an onnx file")
    meta["onnx"].pop("sha256")
    meta["onnx"].pop("bytes")
    (model_copy / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(InputError, match="not a loadable ONNX model"):
        load_predictor(model_dir=model_copy)


def test_classes_not_matching_metadata(model_copy):
    meta = json.loads((model_copy / "metadata.json").read_text())
    meta["classes"] = meta["classes"][:3]
    (model_copy / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(InputError, match="3"):
        load_predictor(model_dir=model_copy)
    with pytest.raises(InputError, match="do not fit"):
        load_predictor(model_dir=model_copy, backend="torch")


def test_bad_metadata(model_copy):
    (model_copy / "metadata.json").write_text("{not json")
    with pytest.raises(InputError, match="not valid JSON"):
        load_predictor(model_dir=model_copy)


@pytest.mark.parametrize("image", [np.zeros((0, 10), np.float32), np.zeros((10, 0)), np.zeros((2, 3, 4, 5)),
                                   np.full((8, 8), np.nan, np.float32)])
def test_bad_images(tiny_model_dir, image):
    p = load_predictor(model_dir=tiny_model_dir)
    with pytest.raises(InputError):
        p.predict(image)


def test_detectron2_backend_absent_is_a_config_error(tiny_model_dir):
    try:
        import detectron2  # noqa: F401
    except ImportError:
        with pytest.raises(ConfigError, match="detectron2"):
            load_predictor(model_dir=tiny_model_dir, backend="detectron2")
    else:  # pragma: no cover - only where detectron2 is installed
        pytest.skip("detectron2 installed: the missing-package error cannot happen")


def test_cli_bad_model_one_line_exit_code(model_copy, run_cxr):
    (model_copy / "model.onnx").write_bytes(b"broken")
    r = run_cxr("model", "eval", "--model-dir", str(model_copy), "--n", "1")
    assert r.returncode == 3
    assert r.stderr.strip().startswith("cxr: error:") and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_cli_list_and_card(tiny_model_dir, run_cxr):
    root = tiny_model_dir.parent.parent
    r = run_cxr("model", "list", env={"CXR_MODELS_DIR": str(root)})
    assert r.returncode == 0 and "cxr-tiny 0.1.0" in r.stdout and "not for clinical use" in r.stdout
    r = run_cxr("model", "card", env={"CXR_MODELS_DIR": str(root), "CXR_MODEL_NAME": "cxr-tiny"})
    assert r.returncode == 0 and "NOT FOR CLINICAL USE" in r.stdout
