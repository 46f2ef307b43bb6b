"""tools/eval.py model=<exported file> backend=...: the runtime path scores like the checkpoint path.

The runtime (``facedet_runtime.FaceDetector``) is replaced by a stand-in of the same contract built on
``facedet.inference.Predictor``, so what is tested is this side: feeding original images, the test
size, the thresholds passed, the mapping to records and the evaluators. A wrong letterbox size, a
threshold not passed on or images matched to the wrong records would change the AP.
"""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf

from facedet.cli.evaluate import model_argv, run
from facedet.registry import ConfigError

from .checkpoint_utils import tiny_run
from .conftest import compose_config as _compose


class PredictorRuntime:
    """The runtime contract (dp-common.md) over the PyTorch Predictor of a checkpoint."""

    calls: list[dict] = []

    def __init__(self, path, *, backend="onnxruntime", threads=None, score_thresh=None, nms_iou=None,
                 max_det=None, img_size=None, nms=None, landmark_vote_iou=None):
        from facedet.inference.predictor import Predictor, load_detector

        type(self).calls.append({"backend": backend, "score_thresh": score_thresh, "nms_iou": nms_iou,
                                 "max_det": max_det, "img_size": img_size, "nms": nms})
        model, cfg, _ = load_detector(path, score_thresh=score_thresh, nms_iou=nms_iou, max_det=max_det, nms=nms,
                                      landmark_vote_iou=landmark_vote_iou)
        # the file's metadata holds the model config's post-processing (what the export wrote), not the overrides
        post = OmegaConf.to_container(load_detector(path)[1].model.postprocess, resolve=True)
        self.metadata = {"format": "facedet/1", "postprocess": json.dumps(post), "img_size": str(cfg.data.img_size)}
        self.img_size = int(img_size or cfg.data.img_size)
        self.num_landmarks = int(cfg.model.head.get("num_landmarks", 0))
        self.predictor = Predictor(model, img_size=self.img_size)

    def __call__(self, images):
        return self.predictor(images)


class PlainRuntime(PredictorRuntime):
    """A runtime with only the keywords of the contract (no ``img_size``, ``nms``, ``landmark_vote_iou``)."""

    def __init__(self, path, *, backend="onnxruntime", threads=None, score_thresh=None, nms_iou=None, max_det=None):
        super().__init__(path, backend=backend, score_thresh=score_thresh, nms_iou=nms_iou, max_det=max_det)


@pytest.fixture
def runtime(monkeypatch):
    fake = types.ModuleType("facedet_runtime")
    fake.FaceDetector = PredictorRuntime
    monkeypatch.setitem(sys.modules, "facedet_runtime", fake)
    PredictorRuntime.calls = []
    return fake


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    return tiny_run(tmp_path_factory) / "checkpoints" / "best.pt"


def data_overrides(ckpt: Path) -> list[str]:
    """data=synthetic pointing at the set the tiny run rendered (as stored in its checkpoint)."""
    from facedet.checkpoint import load_checkpoint

    d = load_checkpoint(ckpt)["config"]["data"]
    return ["data=synthetic", f"data.root={d['root']}", f"data.num_train={d['num_train']}",
            f"data.num_val={d['num_val']}", f"data.generator_seed={d['generator_seed']}"]


def compose_config(overrides: list[str], name: str) -> object:
    """The eval config of a command line, ``model=`` rewritten as tools/eval.py does."""
    return _compose(model_argv(overrides), name=name)


COMMON = ["num_workers=0", "batch_size=4", "device=cpu"]


@pytest.mark.parametrize("img_size, nms", [(None, None), (96, "nms")])
def test_exported_path_scores_like_the_checkpoint_path(runtime, ckpt, tmp_path, img_size, nms):
    size = [f"img_size={img_size}"] if img_size else []
    size += [f"nms={nms}"] if nms else []
    by_ckpt = run(compose_config([f"checkpoint={ckpt}", *COMMON, *size], name="eval"), tmp_path / "ckpt")
    by_model = run(compose_config([f"model={ckpt}", "backend=openvino", *data_overrides(ckpt), *COMMON, *size],
                                  name="eval"), tmp_path / "model")
    assert by_ckpt["AP50"] > 0.0  # a model that finds something, or equality would prove little
    for key in ("AP50", "AP", "AP75", "AR", "AP50_tiny", "AP50_small", "AP50_medium", "AP50_large"):
        assert by_model[key] == pytest.approx(by_ckpt[key], abs=1e-6, nan_ok=True), key
    s, t = by_model["settings"], by_ckpt["settings"]
    assert s["img_size"] == t["img_size"] == (img_size or 64)
    assert s["postprocess"] == t["postprocess"] and s["backend"] == "openvino" and s["data"] == "synthetic"
    # only what was asked is passed on; None keeps the file's (the model config's) post-processing and size
    assert runtime.FaceDetector.calls[-1]["score_thresh"] is None and runtime.FaceDetector.calls[-1]["nms"] == nms
    assert runtime.FaceDetector.calls[-1]["img_size"] == img_size
    a = json.loads((tmp_path / "ckpt" / "predictions.json").read_text())
    b = json.loads((tmp_path / "model" / "predictions.json").read_text())
    assert len(a) == len(b) > 0 and {d["image_id"] for d in a} == {d["image_id"] for d in b}
    np.testing.assert_allclose([d["bbox"] for d in b], [d["bbox"] for d in a], atol=1e-3)
    assert json.loads((tmp_path / "model" / "metrics.json").read_text())["AP50"] == by_model["AP50"]


def test_overridden_thresholds_reach_the_runtime(runtime, ckpt, tmp_path):
    m = run(compose_config([f"model={ckpt}", *data_overrides(ckpt), *COMMON, "score_thresh=0.2", "max_det=5"],
                           name="eval"), tmp_path)
    call = runtime.FaceDetector.calls[-1]
    assert call["score_thresh"] == 0.2 and call["max_det"] == 5 and call["backend"] == "onnxruntime"
    assert m["settings"]["postprocess"]["score_thresh"] == 0.2
    assert all(d["score"] > 0.2 for d in json.loads((tmp_path / "predictions.json").read_text()))


@pytest.mark.parametrize("extra, message", [
    (["backend=tensorrt"], "backend=tensorrt"),
    (["eval.tta=flip"], "test-time augmentation"),
])
def test_what_the_runtime_path_cannot_do_is_refused_by_name(runtime, ckpt, tmp_path, extra, message):
    with pytest.raises(ConfigError, match=message):
        run(compose_config([f"model={ckpt}", *data_overrides(ckpt), *COMMON, *extra], name="eval"), tmp_path)


def test_missing_file_data_or_runtime_are_clear_errors(runtime, ckpt, tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match="model=.*nope.onnx: no such file"):
        run(compose_config([f"model={tmp_path / 'nope.onnx'}", *data_overrides(ckpt), *COMMON], name="eval"), tmp_path)
    with pytest.raises(ConfigError, match="data=<name>"):
        run(compose_config([f"model={ckpt}", *COMMON], name="eval"), tmp_path)
    runtime.FaceDetector = PlainRuntime
    for extra in ("img_size=96", "nms=soft_nms", "landmark_vote_iou=0"):
        key = extra.split("=")[0]
        with pytest.raises(ConfigError, match=f"this facedet_runtime cannot set {key}; leave {key}=null"):
            run(compose_config([f"model={ckpt}", *data_overrides(ckpt), *COMMON, extra], name="eval"), tmp_path)
    monkeypatch.setitem(sys.modules, "facedet_runtime", None)  # not installed
    with pytest.raises(ConfigError, match="needs the runtime package facedet_runtime"):
        run(compose_config([f"model={ckpt}", *data_overrides(ckpt), *COMMON], name="eval"), tmp_path)
