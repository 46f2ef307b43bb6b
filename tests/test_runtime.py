"""The torch-free runtime's parts against facedet's own: the letterbox (pixels, ratio, padding and
the inverse mapping), the numpy NMS family against facedet's torch post-processors on random boxes,
the metadata checks, and the import rule (no torch, hydra, omegaconf or facedet in facedet_runtime).

The exported-model tests (a model run in a subprocess without torch) are in test_runtime_model.py.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from facedet.data.transforms import Letterbox
from facedet.inference.predictor import landmarks_to_original
from facedet.postprocess import NMS, DIoUNMS, SoftNMS
from facedet.structures import boxes_to_original, empty_sample_arrays
from facedet_runtime import FORMAT, ModelError, ModelInfo, PostProcess, letterbox_image
from facedet_runtime.letterbox import boxes_to_original as np_boxes_to_original
from facedet_runtime.letterbox import points_to_original

from .runtime_utils import run_without_torch


@pytest.mark.parametrize("hw", [(48, 80), (64, 64), (150, 100), (33, 17), (1, 200), (700, 500)])
def test_letterbox_gives_facedets_pixels_and_inverse_mapping(hw):
    size = 64
    rng = np.random.default_rng(hw[0] * 1000 + hw[1])
    image = rng.integers(0, 256, (*hw, 3), dtype=np.uint8)
    sample = {"image": image, "image_id": "x", "orig_size": hw, **empty_sample_arrays()}
    ref = Letterbox(size=size, pad_value=128)(sample)
    got, ratio, pad = letterbox_image(image, size, 128)
    assert got.shape == (size, size, 3) and np.array_equal(got, ref["image"])
    meta = ref["meta"]
    assert ratio == meta["ratio"] and tuple(map(float, pad)) == meta["pad"] and meta["orig_size"] == hw
    # boxes and points reaching past the image: boxes are clipped to it, points are not
    boxes = torch.from_numpy(rng.uniform(-10, size + 10, (20, 4)).astype(np.float32))
    points = torch.from_numpy(rng.uniform(-10, size + 10, (20, 5, 2)).astype(np.float32))
    want_boxes = boxes_to_original(boxes, meta).numpy()
    got_boxes = np_boxes_to_original(boxes.numpy(), ratio, pad, hw)
    assert np.allclose(got_boxes, want_boxes, rtol=0, atol=1e-4)
    assert got_boxes.min() >= 0 and (got_boxes[:, [0, 2]] <= hw[1]).all() and (got_boxes[:, [1, 3]] <= hw[0]).all()
    want_points = landmarks_to_original(points, meta).numpy()
    got_points = points_to_original(points.numpy(), ratio, pad)
    assert np.allclose(got_points, want_points, rtol=0, atol=1e-4)
    assert got_points.min() < 0 or got_points[..., 0].max() > hw[1] or got_points[..., 1].max() > hw[0]


def random_candidates(seed: int, n: int = 400, k: int = 5):
    """``n`` random boxes in clusters (so NMS has work), scores, and points, float32."""
    rng = np.random.default_rng(seed)
    centres = rng.uniform(20, 300, (n // 8 + 1, 2))[rng.integers(0, n // 8 + 1, n)] + rng.normal(0, 6, (n, 2))
    wh = rng.uniform(8, 60, (n, 2))
    boxes = np.concatenate([centres - wh / 2, centres + wh / 2], 1).astype(np.float32)
    scores = rng.uniform(0, 1, n).astype(np.float32)
    points = (centres[:, None] + rng.normal(0, 10, (n, k, 2))).astype(np.float32)
    return boxes, scores, points


TORCH_NMS = {"diou_nms": DIoUNMS, "nms": NMS, "soft_nms": SoftNMS}


@pytest.mark.parametrize("kind", ["diou_nms", "nms", "soft_nms"])
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("settings", [
    {"score_thresh": 0.3, "nms_iou": 0.5, "max_det": 300, "pre_nms_topk": 3000, "landmark_vote_iou": 0.0},
    {"score_thresh": 0.05, "nms_iou": 0.6, "max_det": 20, "pre_nms_topk": 150, "landmark_vote_iou": 0.6},
    {"score_thresh": 0.001, "nms_iou": 0.3, "max_det": 1000, "pre_nms_topk": 50, "landmark_vote_iou": 0.3},
])
def test_numpy_nms_keeps_facedets_boxes(kind, seed, settings):
    boxes, scores, points = random_candidates(seed)
    extra = {"method": "linear" if seed == 1 else "gaussian", "sigma": 0.5} if kind == "soft_nms" else {}
    ref = TORCH_NMS[kind](**settings, **extra)(torch.from_numpy(boxes)[None], torch.from_numpy(scores)[None],
                                              torch.from_numpy(points)[None])[0]
    got = PostProcess.from_dict({"type": kind, **settings, **extra})(boxes, scores, points)
    assert len(ref["scores"]) > 3 and len(got["scores"]) == len(ref["scores"])
    if kind != "soft_nms":  # suppression removes boxes (soft-NMS lowers scores instead)
        assert len(got["scores"]) < (scores > settings["score_thresh"]).sum()
    assert np.array_equal(got["boxes"], ref["boxes"].numpy())  # the same boxes, in the same order
    assert np.allclose(got["scores"], ref["scores"].numpy(), rtol=1e-6, atol=1e-7)
    assert np.allclose(got["landmarks"], ref["landmarks"].numpy(), rtol=0, atol=1e-3)
    assert (np.diff(got["scores"]) <= 0).all() and got["boxes"].dtype == np.float32


def test_numpy_nms_without_landmarks_and_with_no_candidates():
    boxes, scores, _ = random_candidates(3)
    got = PostProcess(type="diou_nms", score_thresh=0.5)(boxes, scores)
    ref = DIoUNMS(score_thresh=0.5)(torch.from_numpy(boxes)[None], torch.from_numpy(scores)[None])[0]
    assert "landmarks" not in got and np.array_equal(got["boxes"], ref["boxes"].numpy())
    empty = PostProcess(score_thresh=0.99)(boxes[:0], scores[:0], np.zeros((0, 5, 2), np.float32))
    assert empty["boxes"].shape == (0, 4) and empty["scores"].shape == (0,) and empty["landmarks"].shape == (0, 5, 2)


@pytest.mark.parametrize("node, message", [
    ({"type": "wbf"}, "unknown NMS type 'wbf'"),
    ({"type": "nms", "iou": 0.5}, "unknown key(s) iou"),
    ({"max_det": 0}, "must be positive"),
])
def test_postprocess_node_errors_name_the_problem(node, message):
    with pytest.raises(ValueError, match=f"where: .*{message}".replace("(", r"\(").replace(")", r"\)")):
        PostProcess.from_dict(node, where="where")


def test_metadata_is_read_and_checked():
    meta = {"format": FORMAT, "producer": "facedet", "img_size": "320", "num_landmarks": "5", "pad_value": "128",
            "postprocess": '{"type": "nms", "score_thresh": 0.2, "nms_iou": 0.4, "max_det": 50}'}
    info = ModelInfo.from_metadata(meta, "m.onnx", ["boxes", "scores", "landmarks"])
    assert (info.img_size, info.num_landmarks, info.pad_value, info.nms_in_graph) == (320, 5, 128, False)
    assert info.postprocess == PostProcess(type="nms", score_thresh=0.2, nms_iou=0.4, max_det=50)
    # an export from before the format key: producer is enough; the in-graph NMS's thresholds are read
    old = {"producer": "facedet", "img_size": "64", "num_landmarks": "0", "score_thresh": "0.3", "nms_iou": "0.5"}
    info = ModelInfo.from_metadata(old, "old.onnx", ["detections"])
    assert info.nms_in_graph and (info.postprocess.score_thresh, info.postprocess.nms_iou) == (0.3, 0.5)
    with pytest.raises(ModelError, match="other.onnx is not a facedet export"):
        ModelInfo.from_metadata({"img_size": "64"}, "other.onnx", ["boxes", "scores"])
    with pytest.raises(ModelError, match="m.onnx: outputs"):
        ModelInfo.from_metadata(meta, "m.onnx", ["boxes", "scores"])  # 5 landmarks promised, no output
    with pytest.raises(ModelError, match="m.onnx: metadata img_size"):
        ModelInfo.from_metadata({"format": FORMAT}, "m.onnx", ["boxes", "scores"])


def test_runtime_imports_without_torch_hydra_omegaconf_or_facedet():
    # every module of the runtime, in a process where those cannot be imported (the import-linter
    # contract in pyproject checks the same statically)
    code = """
import importlib, pkgutil, facedet_runtime
names = [m.name for m in pkgutil.iter_modules(facedet_runtime.__path__, 'facedet_runtime.')]
for n in names:
    importlib.import_module(n)
print(len(names), sorted(k for k in sys.modules if k.split('.')[0] in {'torch', 'hydra', 'omegaconf', 'facedet'}))
"""
    proc = run_without_torch(code)
    assert proc.returncode == 0, proc.stderr
    count, loaded = proc.stdout.split(" ", 1)
    assert int(count) >= 8 and loaded.strip() == "[]"
    proc = run_without_torch("import torch")  # the blocker works
    assert proc.returncode != 0 and "torch is not installed (blocked by the test)" in proc.stderr
