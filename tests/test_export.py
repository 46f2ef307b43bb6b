"""ONNX export: onnxruntime runs the exported model at other batch sizes and image sizes and its
decoded boxes (and a landmark model's points) match PyTorch's (the max absolute difference is
reported and bounded); in-graph NMS, whose rows carry the kept boxes' points.

Tests that write an ONNX file skip without the [export] extra. Exporting takes torch's exporter
about 35 s on 2 idle CPU cores, so the default run exports each model once (without NMS, shared by
two tests: the one-step checkpoint, and a landmark model); the exports with NMS inside are marked
slow (``python -m pytest -m slow tests/test_export.py``), and the in-graph NMS is checked against the
NMS postprocessor in PyTorch in the default run.
"""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from torchvision.ops import box_iou, nms

from facedet.cli.export import export
from facedet.export.onnx import ExportWrapper, _paired, compare_with_onnxruntime, export_onnx, verification_images
from facedet.inference import load_detector
from facedet.models import build_detector
from facedet.postprocess import NMS

from .checkpoint_utils import tiny_run
from .conftest import compose_config

MISSING = [m for m in ("onnx", "onnxscript", "onnxruntime") if importlib.util.find_spec(m) is None]


needs_export = pytest.mark.skipif(bool(MISSING), reason=f"the [export] extra is not installed ({', '.join(MISSING)})")

TOL = 1e-3  # pixels for boxes, probability for scores


def export_cfg(overrides):
    # slim=true (the default) needs onnxslim, of the [deploy] extra, which this file does not test
    slim = f"slim={importlib.util.find_spec('onnxslim') is not None}"
    return compose_config([slim, *overrides], name="export")


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return tiny_run(tmp_path_factory) / "checkpoints" / "best.pt"


def export_to_temp(checkpoint, tmp_path_factory, name: str):
    """facedet-export of ``checkpoint`` into a fresh folder: (the report, the folder)."""
    out = tmp_path_factory.mktemp(name)
    return export(export_cfg([f"checkpoint={checkpoint}", f"out={out / 'm.onnx'}"]), out), out


@pytest.fixture(scope="module")
def exported(ckpt, tmp_path_factory):
    return export_to_temp(ckpt, tmp_path_factory, "export")


@needs_export
def test_export_reports_parity_with_pytorch(exported):
    report, out = exported
    p = report["parity"]
    print(f"onnxruntime vs PyTorch: max |d box| {p['max_abs_box']:.3g} px, max |d score| {p['max_abs_score']:.3g}")
    assert report["parity_ok"] and p["same_shapes"] and p["max_abs_box"] <= TOL and p["max_abs_score"] <= TOL
    assert p["boxes_compared"] > 500
    assert json.loads((out / "export.json").read_text())["parity_ok"]


@needs_export
def test_onnxruntime_decodes_like_pytorch_at_other_batch_and_image_sizes(exported, ckpt):
    import onnxruntime as ort

    report = exported[0]
    model = load_detector(ckpt)[0]
    session = ort.InferenceSession(report["onnx"], providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == ["boxes", "scores"]
    meta = session.get_modelmeta().custom_metadata_map
    assert meta["producer"] == "facedet" and json.loads(meta["img_size"]) == 64 and meta["nms"] == "none"
    g = torch.Generator().manual_seed(1)
    for b, h, w in [(3, 96, 160), (1, 32, 32)]:
        x = torch.rand(b, 3, h, w, generator=g)
        with torch.no_grad():
            ref_boxes, ref_scores, _ = model.candidates(x)
        boxes, scores = session.run(None, {"images": x.numpy()})
        assert boxes.shape == tuple(ref_boxes.shape) and scores.shape == tuple(ref_scores.shape)
        d_box, d_score = np.abs(boxes - ref_boxes.numpy()).max(), np.abs(scores - ref_scores.numpy()).max()
        print(f"{(b, h, w)}: max |d box| {d_box:.3g} px, max |d score| {d_score:.3g}")
        assert d_box <= TOL and d_score <= TOL


def test_in_graph_nms_equals_the_nms_postprocessor(ckpt):
    # eager check of the exported module's NMS (no export needed): same detections as facedet's NMS
    model, _, _ = load_detector(ckpt)
    x = torch.rand(3, 3, 64, 96, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        boxes, scores, _ = model.candidates(x)
    thresh = float(scores.median())  # enough candidates, and some below the threshold
    dets = ExportWrapper(model, nms_in_graph=True, score_thresh=thresh, nms_iou=0.5)(x)
    ref = NMS(score_thresh=thresh, nms_iou=0.5, max_det=10**6, pre_nms_topk=10**6)(boxes, scores)
    assert len(dets) > 10
    for i, r in enumerate(ref):
        mine = dets[dets[:, 0] == i]
        assert torch.allclose(mine[:, 1:5], r["boxes"]) and torch.allclose(mine[:, 5], r["scores"])


# --- a landmark model (num_landmarks 5): untrained, saved as a checkpoint the tools read


@pytest.fixture(scope="module")
def landmark_checkpoint(ckpt, tmp_path_factory):
    """The one-step checkpoint grown to a landmark model: the same backbone, neck, boxes and
    scores (so its NMS decisions are those the tests above check), and point outputs from random
    weights and biases of the prediction convs (a few anchors' sizes from the cells). A random model
    would not do: an untrained model's features fade through its layers in eval mode, and once
    its BatchNorm statistics are measured its outputs are so large that float32 noise alone
    exceeds TOL."""
    base, train_cfg, _ = load_detector(ckpt)
    cfg = OmegaConf.to_container(train_cfg, resolve=True)
    cfg["model"]["head"]["num_landmarks"] = 5
    cfg["model"]["loss"]["landmark_loss"] = {"type": "wing"}
    model = build_detector(cfg["model"])
    state = base.state_dict()
    g = torch.Generator().manual_seed(0)
    for i, pred in enumerate(model.head.preds):
        a, c = model.head.num_anchors, pred.in_channels
        w = state[f"head.preds.{i}.weight"].view(a, 5, c, 1, 1)
        b = state[f"head.preds.{i}.bias"].view(a, 5)
        extra = 0.3 * torch.randn(a, 10, c, 1, 1, generator=g)
        state[f"head.preds.{i}.weight"] = torch.cat((w, extra), 1).flatten(0, 1)
        state[f"head.preds.{i}.bias"] = torch.cat((b, torch.randn(a, 10, generator=g)), 1).flatten()
    model.load_state_dict(state)
    path = tmp_path_factory.mktemp("landmarks") / "best.pt"
    torch.save({"config": cfg, "model": model.state_dict()}, path)
    return path


@pytest.fixture(scope="module")
def exported_landmarks(landmark_checkpoint, tmp_path_factory):
    return export_to_temp(landmark_checkpoint, tmp_path_factory, "export_landmarks")


@needs_export
def test_landmark_model_exports_its_points_like_pytorch(exported_landmarks, landmark_checkpoint):
    import onnxruntime as ort

    report, out = exported_landmarks
    p = report["parity"]
    print(f"landmarks: max |d box| {p['max_abs_box']:.3g} px, max |d point| {p['max_abs_landmark']:.3g} px")
    assert report["parity_ok"] and report["num_landmarks"] == 5 and p["boxes_compared"] > 500
    assert p["max_abs_landmark"] <= TOL and p["max_abs_box"] <= TOL and p["max_abs_score"] <= TOL
    session = ort.InferenceSession(report["onnx"], providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == ["boxes", "scores", "landmarks"]
    meta = session.get_modelmeta().custom_metadata_map
    assert json.loads(meta["num_landmarks"]) == 5 and meta["landmark_order"].startswith("left eye, right eye")
    model = load_detector(landmark_checkpoint)[0]
    x = torch.rand(3, 3, 96, 160, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = model.candidates(x)
    got = session.run(None, {"images": x.numpy()})
    assert [g.shape for g in got] == [tuple(r.shape) for r in ref] and got[2].shape[2:] == (5, 2)
    assert max(float(np.abs(g - r.numpy()).max()) for g, r in zip(got, ref, strict=True)) <= TOL


@pytest.mark.parametrize("vote", [0.0, 0.3])
def test_in_graph_nms_rows_carry_the_kept_boxes_points(landmark_checkpoint, vote):
    # vote 0.3: the one-step model's neighbouring candidates overlap by up to IoU 0.47, so they vote
    model = spread_scores(load_detector(landmark_checkpoint)[0])
    x = torch.rand(2, 3, 64, 96, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        boxes, scores, points = model.candidates(x)
    thresh = float(scores.median())
    dets = ExportWrapper(model, nms_in_graph=True, score_thresh=thresh, nms_iou=0.5, landmark_vote_iou=vote)(x)
    ref = NMS(score_thresh=thresh, nms_iou=0.5, max_det=10**6, pre_nms_topk=10**6,
              landmark_vote_iou=vote)(boxes, scores, points)
    own = NMS(score_thresh=thresh, nms_iou=0.5, max_det=10**6, pre_nms_topk=10**6)(boxes, scores, points)
    assert dets.shape[1] == 16 and len(dets) > 10
    moved = sum(int((r["landmarks"] != o["landmarks"]).any(-1).any(-1).sum()) for r, o in zip(ref, own, strict=True))
    assert (moved > 0) == (vote > 0)  # voting moved some faces' points, and only with voting
    for i, r in enumerate(ref):
        mine = dets[dets[:, 0] == i]
        assert torch.allclose(mine[:, 1:5], r["boxes"]) and torch.allclose(mine[:, 5], r["scores"])
        assert torch.allclose(mine[:, 6:], r["landmarks"].flatten(1))  # x1, y1, ..., x5, y5


def spread_scores(model, factor: float = 32.0):
    """The one-step model scores every box about 0.01, as a function of the box's position more than
    of the image (the image's signal fades through its untrained layers), so many scores are equal
    or nearly so and float noise would decide NMS's order; scaling the objectness weights spreads
    them (to about 0.0075-0.012 at 32, far from saturating at 1.0, where ties would come back)."""
    with torch.no_grad():
        for pred in model.head.preds:
            pred.weight.view(model.head.num_anchors, model.head.num_outputs, -1)[:, 4] *= factor
    return model


def threshold_in_gap(scores: torch.Tensor, q: float, window: float = 0.05) -> float:
    """A score threshold near the ``q``-quantile of the distinct ``scores``: the middle of the widest
    gap between neighbouring scores there, so that no score is within float noise of it."""
    s = scores.flatten().unique()
    lo, hi = int(len(s) * (q - window)), int(len(s) * (q + window))
    i = lo + int((s[lo + 1:hi + 1] - s[lo:hi]).argmax())
    return float((s[i] + s[i + 1]) / 2)


def nms_decisions(boxes, scores, thresh: float, nms_iou: float) -> tuple[float, int]:
    """How far one image's NMS is from deciding by float noise, and how many boxes it suppresses.
    The margin is the smallest distance of a score to ``thresh``, of the IoU of two candidates above
    it to ``nms_iou``, and between the scores of two candidates that overlap by more than
    ``nms_iou`` (their order decides which one NMS keeps)."""
    keep = scores > thresh
    b, s = boxes[keep], scores[keep]
    iou = box_iou(b, b)
    pairs = torch.ones_like(iou, dtype=torch.bool).triu(1)
    overlap = pairs & (iou > nms_iou)
    margins = [(scores - thresh).abs(), (iou[pairs] - nms_iou).abs(), (s[:, None] - s[None]).abs()[overlap]]
    return float(torch.cat(margins).min()), len(s) - len(nms(b, s, nms_iou))


# The one-step model's candidates overlap by at most IoU 0.47: at 0.5 NMS would suppress nothing,
# and the test could not tell the exported IoU threshold from another.
NMS_IOU = 0.4


@needs_export
@pytest.mark.slow
@pytest.mark.parametrize("which", ["checkpoint", "landmarks"])
def test_exported_nms_runs_in_onnxruntime_like_pytorch(which, ckpt, landmark_checkpoint, tmp_path):
    import onnxruntime as ort

    # the landmark model has the checkpoint's boxes and scores: the same NMS decisions, points added
    model = spread_scores(load_detector(ckpt if which == "checkpoint" else landmark_checkpoint)[0])
    x = verification_images([(2, 96, 64)], seed=3)[0]
    shapes = [(1, 64, 64), (3, 96, 128)]
    with torch.no_grad():
        candidates = [model.candidates(batch) for batch in [x, *verification_images(shapes)]]
    thresh = threshold_in_gap(torch.cat([scores.flatten() for _, scores, _ in candidates]), q=0.7)
    # every image: NMS suppresses boxes, and no decision is within float noise (runtimes differ by
    # about 1e-7 in score), so onnxruntime and PyTorch must keep the same boxes
    for boxes, scores, _ in candidates:
        for image_boxes, image_scores in zip(boxes, scores, strict=True):
            margin, suppressed = nms_decisions(image_boxes, image_scores, thresh, NMS_IOU)
            assert margin > 1e-6 and suppressed > 0, (margin, suppressed)
    vote = 0.3 if which == "landmarks" else 0.0  # the points voted in the graph, too
    path = export_onnx(model, tmp_path / "nms.onnx", img_size=64, nms_in_graph=True, score_thresh=thresh,
                       nms_iou=NMS_IOU, landmark_vote_iou=vote)
    report = compare_with_onnxruntime(model, path, shapes, nms_in_graph=True, score_thresh=thresh, nms_iou=NMS_IOU,
                                      landmark_vote_iou=vote)
    print(report)
    assert report["same_shapes"] and report["boxes_compared"] > 0
    assert report["max_abs_box"] <= TOL and report["max_abs_score"] <= TOL
    assert report.get("max_abs_landmark", 0.0) <= TOL and ("max_abs_landmark" in report) == (which == "landmarks")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (dets,) = session.run(None, {"images": x.numpy()})
    with torch.no_grad():
        ref = ExportWrapper(model, nms_in_graph=True, score_thresh=thresh, nms_iou=NMS_IOU, landmark_vote_iou=vote)(x)
    assert dets.shape == tuple(ref.shape) and len(dets) > 0 and dets.shape[1] == 6 + 2 * model.num_landmarks
    pairs = _paired(ref.numpy(), dets)  # the same boxes, each image's in either order of equal scores
    assert pairs is not None and np.abs(pairs[0] - pairs[1]).max() <= TOL
    assert set(dets[:, 0].tolist()) == {0.0, 1.0}  # both images of the batch
    # grouped by image, by descending score within an image
    assert (np.diff(dets[:, 0]) >= 0).all()
    assert all((np.diff(dets[dets[:, 0] == i, 5]) <= 0).all() for i in (0, 1))
