"""numpy anchors / box decoding / NMS / post-processing against torchvision on the same raw outputs."""

import numpy as np
import pytest

from cxr.model.anchors import anchor_sizes, feature_sizes, grid_anchors
from cxr.model.box_coding import BBOX_XFORM_CLIP, decode, encode
from cxr.model.nms import batched_nms, nms
from cxr.model.postprocess import Detections, RawOutput, decode_levels, postprocess

pytestmark = pytest.mark.unit


def test_anchors_equal_torchvision():
    import torch
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.image_list import ImageList

    size = 96
    sizes = anchor_sizes(8)
    ratios = ((0.5, 1.0, 2.0),) * 5
    fs = feature_sizes(size)
    gen = AnchorGenerator(sizes, ratios)
    feats = [torch.zeros(1, 4, h, w) for h, w in fs]
    ref = gen(ImageList(torch.zeros(1, 1, size, size), [(size, size)]), feats)[0].numpy()
    ours = np.concatenate(grid_anchors((size, size), fs, sizes, ratios))
    np.testing.assert_array_equal(ours, ref)


def test_feature_sizes_match_the_network(tiny_model):
    import torch

    model, _ = tiny_model
    with torch.no_grad():
        feats = model.backbone(torch.zeros(1, 1, 96, 96))
    assert [tuple(f.shape[-2:]) for f in feats.values()] == feature_sizes(96)


def test_decode_equals_torchvision_boxcoder():
    import torch
    from torchvision.models.detection._utils import BoxCoder

    rng = np.random.default_rng(0)
    anchors = np.abs(rng.normal(50, 20, (200, 4))).astype(np.float32)
    anchors[:, 2:] = anchors[:, :2] + np.abs(anchors[:, 2:]) + 1
    deltas = rng.normal(0, 1.5, (200, 4)).astype(np.float32)
    deltas[0, 2] = 20  # hits the clamp
    ref = BoxCoder((1.0, 1.0, 1.0, 1.0)).decode_single(torch.from_numpy(deltas), torch.from_numpy(anchors)).numpy()
    np.testing.assert_allclose(decode(deltas, anchors), ref, rtol=1e-5, atol=1e-3)
    boxes = decode(deltas[1:], anchors[1:])
    expected = deltas[1:].copy()
    expected[:, 2:] = np.minimum(expected[:, 2:], BBOX_XFORM_CLIP)  # decode clamps dw, dh
    np.testing.assert_allclose(encode(boxes, anchors[1:]), expected, atol=1e-3)


def test_nms_equals_torchvision():
    import torch
    from torchvision.ops import batched_nms as tv_batched_nms
    from torchvision.ops import nms as tv_nms

    rng = np.random.default_rng(1)
    xy = rng.uniform(0, 100, (300, 2)).astype(np.float32)
    wh = rng.uniform(5, 40, (300, 2)).astype(np.float32)
    boxes = np.concatenate([xy, xy + wh], 1)
    scores = rng.uniform(0, 1, 300).astype(np.float32)
    labels = rng.integers(0, 4, 300)
    for thr in (0.3, 0.5, 0.7):
        ref = tv_nms(torch.from_numpy(boxes), torch.from_numpy(scores), thr).numpy()
        np.testing.assert_array_equal(nms(boxes, scores, thr), ref)
        ref = tv_batched_nms(torch.from_numpy(boxes), torch.from_numpy(scores), torch.from_numpy(labels), thr).numpy()
        np.testing.assert_array_equal(batched_nms(boxes, scores, labels, thr), ref)


@pytest.mark.parametrize("score_thr,nms_thr,topk,max_det", [(0.05, 0.5, 1000, 100), (0.3, 0.4, 50, 20), (0.5, 0.6, 1000, 100)])
def test_numpy_postprocess_equals_torchvision_retinanet(tiny_model, score_thr, nms_thr, topk, max_det):
    """Same raw head outputs -> torchvision's RetinaNet.postprocess_detections and ours agree."""
    import torch

    model, classes = tiny_model
    size = 64
    torch.manual_seed(3)
    x = torch.rand(1, 1, size, size)
    with torch.no_grad():
        feats = list(model.backbone((x - 0.5) / 0.25).values())
        head = model.head(feats)
        from torchvision.models.detection.image_list import ImageList

        anchors = model.anchor_generator(ImageList(x, [(size, size)]), feats)
    head["cls_logits"] = head["cls_logits"] * 3  # spread the scores
    n_per_level = [f.shape[2] * f.shape[3] * 9 for f in feats]
    split_head = {k: list(v.split(n_per_level, dim=1)) for k, v in head.items()}
    split_anchors = [list(a.split(n_per_level)) for a in anchors]
    model.score_thresh, model.nms_thresh = score_thr, nms_thr
    model.topk_candidates, model.detections_per_img = topk, max_det
    ref = model.postprocess_detections(split_head, split_anchors, [(size, size)])[0]

    ours_anchors = grid_anchors((size, size), feature_sizes(size), model.anchor_generator.sizes,
                                model.anchor_generator.aspect_ratios)
    boxes, scores, labels = decode_levels([t[0].numpy() for t in split_head["cls_logits"]],
                                          [t[0].numpy() for t in split_head["bbox_regression"]], ours_anchors,
                                          (size, size), score_thr=score_thr, nms_thr=nms_thr, topk=topk, max_det=max_det)
    assert len(ref["boxes"]) > 5
    np.testing.assert_array_equal(labels, ref["labels"].numpy())
    np.testing.assert_allclose(scores, ref["scores"].numpy(), rtol=1e-5)
    np.testing.assert_allclose(boxes, ref["boxes"].numpy(), atol=1e-3)


def _raw(seed=0, n_anchors=400, n_classes=5):
    from cxr.model.anchors import base_anchors

    rng = np.random.default_rng(seed)
    centers = rng.uniform(0, 128, (n_anchors, 2)).astype(np.float32)
    anchors = np.concatenate([centers, centers], 1) + np.tile(base_anchors([16], [1.0]), (n_anchors, 1))
    raw = RawOutput(kind="anchors", orig_size=(256, 200), cls_logits=rng.normal(-1, 2, (n_anchors, n_classes)).astype(np.float32),
                    box_deltas=rng.normal(0, 0.3, (n_anchors, 4)).astype(np.float32), level_sizes=(n_anchors,), scale=0.5)
    return raw, [anchors]


def test_raising_score_threshold_never_adds_boxes():
    from cxr.model.classes import SEED_CLASSES

    for seed in range(5):
        raw, anchors = _raw(seed)
        prev = None
        for thr in np.linspace(0.0, 1.0, 21):
            det = postprocess(raw, anchors, SEED_CLASSES, score_thr=float(thr), nms_thr=0.5)
            if prev is not None:
                assert len(det) <= len(prev)
            assert (det.scores > thr).all()
            prev = det
        assert len(prev) == 0


def test_class_thresholds_class_filter_and_max_det():
    from cxr.errors import InputError
    from cxr.model.classes import SEED_CLASSES

    raw, anchors = _raw(1)
    base = postprocess(raw, anchors, SEED_CLASSES, score_thr=0.3, max_det=1000)
    strict = postprocess(raw, anchors, SEED_CLASSES, score_thr=0.3, class_thr={"Nodule/Mass": 0.9}, max_det=1000)
    nod = SEED_CLASSES.index("Nodule/Mass")
    assert (strict.scores[strict.class_ids == nod] > 0.9).all()
    assert (base.class_ids == nod).sum() > (strict.class_ids == nod).sum() > 0
    others = base.class_ids != nod
    assert (strict.class_ids != nod).sum() == others.sum()  # other classes untouched
    only = postprocess(raw, anchors, SEED_CLASSES, score_thr=0.3, classes={"ILD"})
    assert len(only) and set(only.class_names) == {"ILD"}
    assert len(postprocess(raw, anchors, SEED_CLASSES, score_thr=0.0, max_det=7)) == 7
    # boxes are in original pixels: within the 256x200 original, scale 0.5 undone
    assert base.boxes[:, 2].max() <= 200 and base.boxes[:, 3].max() <= 256 and base.boxes.max() > 128
    with pytest.raises(InputError):
        postprocess(raw, anchors, SEED_CLASSES, class_thr={"Pneumothorax": 0.5})
    with pytest.raises(InputError):
        postprocess(raw, anchors, SEED_CLASSES, classes={"nope"})
    with pytest.raises(InputError):
        postprocess(raw, anchors, SEED_CLASSES[:4])


def test_detections_records():
    det = Detections(np.array([[1, 2, 3, 4]]), np.array([0.9]), np.array([4]), ["Nodule/Mass"])
    assert len(det) == 1
    assert det.records() == [{"class_id": 4, "class_name": "Nodule/Mass", "score": pytest.approx(0.9),
                              "x_min": 1.0, "y_min": 2.0, "x_max": 3.0, "y_max": 4.0}]
    assert len(Detections.empty()) == 0 and Detections.empty().records() == []


def test_decoded_boxes_filtering_with_plain_arrays():
    """Boxes a backend decoded itself (the seed's Detectron2 gave these) get the same run-time knobs."""
    from cxr.model.postprocess import filter_detections

    det = filter_detections(np.array([[0, 0, 10, 10], [1, 1, 10, 10], [50, 50, 60, 70]], np.float32),
                            np.array([0.9, 0.8, 0.4]), np.array([1, 1, 4]), ["a", "b", "c", "d", "e"],
                            score_thr=0.3, nms_thr=0.5)
    assert det.class_names == ["b", "e"] and det.scores.tolist() == pytest.approx([0.9, 0.4])
    assert det.boxes.tolist() == [[0, 0, 10, 10], [50, 50, 60, 70]]
    assert len(filter_detections(np.zeros((0, 4)), np.zeros(0), np.zeros(0), ["a"])) == 0


@pytest.mark.parametrize("shape,out", [((512, 512), (192, 192)), ((300, 200), (96, 64)), ((50, 70), (137, 192))])
def test_resize_equals_torch_interpolate(shape, out):
    import torch
    import torch.nn.functional as F

    from cxr.model.preprocess import resize_bilinear

    img = np.random.default_rng(0).uniform(0, 1, shape).astype(np.float32)
    ref = F.interpolate(torch.from_numpy(img)[None, None], size=out, mode="bilinear", align_corners=False)[0, 0].numpy()
    np.testing.assert_allclose(resize_bilinear(img, *out), ref, atol=1e-4)
