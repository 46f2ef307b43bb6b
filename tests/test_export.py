"""ONNX export: onnxruntime runs the exported model at other batch sizes and image sizes and its
decoded boxes match PyTorch's (the max absolute difference is reported and bounded); in-graph NMS.

Tests that write an ONNX file skip without the [export] extra. Exporting takes torch's exporter
about 35 s on 2 idle CPU cores, so the default run exports once (without NMS, shared by two tests);
the export with NMS inside is marked slow (``python -m pytest -m slow tests/test_export.py``), and
the in-graph NMS is checked against the NMS postprocessor in PyTorch in the default run.
"""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest
import torch

from facedet.cli.export import export
from facedet.export.onnx import ExportWrapper, _canonical, compare_with_onnxruntime, export_onnx, verification_images
from facedet.inference import load_detector
from facedet.postprocess import NMS

from .checkpoint_utils import tiny_run
from .conftest import compose_config

MISSING = [m for m in ("onnx", "onnxscript", "onnxruntime") if importlib.util.find_spec(m) is None]


needs_export = pytest.mark.skipif(bool(MISSING), reason=f"the [export] extra is not installed ({', '.join(MISSING)})")

TOL = 1e-3  # pixels for boxes, probability for scores


def export_cfg(overrides):
    return compose_config(overrides, name="export")


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return tiny_run(tmp_path_factory) / "checkpoints" / "best.pt"


@pytest.fixture(scope="module")
def exported(ckpt, tmp_path_factory):
    out = tmp_path_factory.mktemp("export")
    report = export(export_cfg([f"checkpoint={ckpt}", f"out={out / 'm.onnx'}"]), out)
    return report, out


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
            ref_boxes, ref_scores = model.candidates(x)
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
        boxes, scores = model.candidates(x)
    thresh = float(scores.median())  # enough candidates, and some below the threshold
    dets = ExportWrapper(model, nms_in_graph=True, score_thresh=thresh, nms_iou=0.5)(x)
    ref = NMS(score_thresh=thresh, nms_iou=0.5, max_det=10**6, pre_nms_topk=10**6)(boxes, scores)
    assert len(dets) > 10
    for i, r in enumerate(ref):
        mine = dets[dets[:, 0] == i]
        assert torch.allclose(mine[:, 1:5], r["boxes"]) and torch.allclose(mine[:, 5], r["scores"])


def spread_scores(model, factor: float = 8.0):
    """The one-step model scores every box about 0.01, so float noise would decide NMS's order;
    scaling the objectness weights spreads the scores like a trained model's (not so far that they
    saturate at exactly 1.0, where ties would again leave the choice to float noise)."""
    with torch.no_grad():
        for pred in model.head.preds:
            pred.weight.view(model.head.num_anchors, model.head.num_outputs, -1)[:, 4] *= factor
    return model


@needs_export
@pytest.mark.slow
def test_exported_nms_runs_in_onnxruntime_like_pytorch(ckpt, tmp_path):
    import onnxruntime as ort

    model = spread_scores(load_detector(ckpt)[0])
    x = verification_images([(2, 96, 64)], seed=3)[0]
    with torch.no_grad():
        thresh = float(model.candidates(x)[1].quantile(0.9))
    path = export_onnx(model, tmp_path / "nms.onnx", img_size=64, nms_in_graph=True, score_thresh=thresh)
    report = compare_with_onnxruntime(model, path, [(1, 64, 64), (3, 96, 128)], nms_in_graph=True, score_thresh=thresh)
    print(report)
    assert report["same_shapes"] and report["boxes_compared"] > 0
    assert report["max_abs_box"] <= TOL and report["max_abs_score"] <= TOL
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (dets,) = session.run(None, {"images": x.numpy()})
    with torch.no_grad():
        ref = ExportWrapper(model, nms_in_graph=True, score_thresh=thresh, nms_iou=0.5)(x)
    assert dets.shape == tuple(ref.shape) and len(dets) > 0
    assert np.abs(_canonical(dets) - _canonical(ref.numpy())).max() <= TOL
    assert set(dets[:, 0].tolist()) == {0.0, 1.0}  # both images of the batch
