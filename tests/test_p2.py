"""The stride-4 (P2) output level: backbones tap stride 4 on request (``out_strides``), ``pan`` adds
the P2 path, and the head, loss, decoding, checkpoint, k-means tool and ONNX export take 4 levels;
3-level models are unchanged."""

from __future__ import annotations

import importlib.util
import re

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from facedet.anchors import anchors_yaml, fit_anchors, per_level
from facedet.models import build_detector
from facedet.models.backbones.cspdarknet import CSPDarknet
from facedet.models.backbones.mobilenet import MobileNetV2, MobileNetV3
from facedet.models.necks.fpn import FPN
from facedet.models.necks.pan import PAN
from facedet.registry import ConfigError

from .conftest import CONFIG_DIR, compose_config

P2 = ["model=yolov4_nano_p2"]
NANO_PARAMS = 1_516_933  # yolov4_nano before the P2 option (commit 4f237d8): the 3-level model must not change


def _model(overrides: list[str]):
    torch.manual_seed(0)
    return build_detector(compose_config(overrides).model)


def _faces(boxes: list[list[float]]) -> dict[str, torch.Tensor]:
    n = len(boxes)
    return {"boxes": torch.tensor(boxes, dtype=torch.float32), "labels": torch.zeros(n, dtype=torch.long),
            "ignore": torch.zeros(n, dtype=torch.bool), "landmarks": torch.full((n, 5, 2), float("nan"))}


def test_p2_model_outputs_a_stride_4_level_and_the_three_usual():
    det = _model(P2)
    assert det.strides == [4, 8, 16, 32] and det.anchors.shape == (4, 3, 2)
    outs = det(torch.rand(2, 3, 96, 64))
    assert [tuple(o.shape) for o in outs] == [(2, 3, 96 // s, 64 // s, 5) for s in (4, 8, 16, 32)]
    assert det.neck.out_channels == [8, 16, 32, 64]  # half the backbone's channels times the neck width 0.5


def test_three_level_models_are_unchanged():
    det = _model(["model=yolov4_nano"])
    assert det.strides == [8, 16, 32] and sum(p.numel() for p in det.parameters()) == NANO_PARAMS
    assert not any(re.search(r"(reduce3|lateral2|td2|down2|bu3)\.", k) for k in det.state_dict())
    p2_keys = set(_model(P2).state_dict())
    assert set(det.state_dict()) < p2_keys  # every 3-level name is still there, some shapes aside


def test_decoding_puts_the_first_level_on_the_stride_4_grid_and_predict_runs():
    det = _model(P2).eval()
    x = torch.rand(1, 3, 64, 64)
    boxes, scores, _ = det.candidates(x)
    assert boxes.shape == (1, 3 * (16 * 16 + 8 * 8 + 4 * 4 + 2 * 2), 4) and scores.shape == boxes.shape[:2]
    raws = [torch.zeros_like(r) for r in det(x)]  # zero outputs: centres at the cell centres
    dec, _, _ = det.head.decode(raws)
    centres = (dec[0, : 16 * 16, :2] + dec[0, : 16 * 16, 2:]) / 2  # level 0, anchor 0, all cells
    grid = (torch.stack(torch.meshgrid(torch.arange(16.0), torch.arange(16.0), indexing="xy"), -1) + 0.5) * 4
    assert torch.allclose(centres, grid.reshape(-1, 2))
    det.postprocess.score_thresh = 0.0
    (pred,) = det.predict(x)
    assert pred["boxes"].shape[1] == 4 and len(pred["scores"]) == det.postprocess.max_det


def _box_grad_per_level(det, boxes: list[list[float]]) -> list[float]:
    """Gradient magnitude of the box outputs' biases (positives only) per level after one loss."""
    det.zero_grad()
    det.loss(torch.rand(2, 3, 64, 64), [_faces(boxes), _faces(boxes)])["loss"].backward()
    grads = []
    for pred in det.head.preds:
        g = pred.bias.grad.view(det.head.num_anchors, det.head.num_outputs)[:, :4]
        grads.append(float(g.abs().sum()))
    return grads


def test_tiny_faces_are_positives_on_the_stride_4_level_only():
    det = _model(P2)
    tiny = _box_grad_per_level(det, [[10.0, 10.0, 16.0, 17.0], [40.0, 20.0, 47.0, 26.0]])  # 6-7 px faces
    assert tiny[0] > 0 and tiny[2] == tiny[3] == 0.0
    large = _box_grad_per_level(det, [[4.0, 4.0, 60.0, 60.0]])  # a 56 px face: stride-16/32 anchors only
    assert large[0] == 0.0 and large[3] > 0


def test_assigner_matches_tiny_faces_at_stride_4_cells():
    det = _model(P2)
    tcat = torch.tensor([[0, 10.0, 10.0, 16.0, 17.0, 0.0]])  # centre (13, 13.5): stride-4 cell (3, 3)
    grids = [(64 // s, 64 // s) for s in det.strides]
    level0 = det.loss_fn.assigner(tcat, det.anchors, det.strides, grids)[0]
    assert level0.num > 0 and (3, 3) in set(zip(level0.gy.tolist(), level0.gx.tolist(), strict=True))


@pytest.mark.parametrize(("overrides", "match"), [
    (["model=yolov4_nano", "anchors=facemask_320_p2"], "model.anchors has 4 levels but the neck gives 3"),
    (["model=yolov4_nano_p2", "anchors=facemask_320"], "model.anchors has 3 levels but the neck gives 4"),
    (["model=yolov4_nano_p2", "model.loss.balance=[4.0,1.0,0.4]"], "balance has 3 weights"),
    (["model=yolov4_nano_p2", "model.head.scale_x_y=[2.0,2.0,2.0]"], "scale_x_y needs one value or 4"),
    (["model=yolov4_nano_p2", "model.backbone.out_strides=[2,4,8,16,32]"], "model.backbone.out_strides"),
])
def test_levels_that_do_not_fit_are_config_errors(overrides, match):
    with pytest.raises(ConfigError, match=re.escape(match)):
        build_detector(compose_config(overrides).model)


def test_backbones_and_necks_refuse_what_they_cannot_do():
    with pytest.raises(ConfigError, match="model.backbone.out_strides"):
        CSPDarknet(out_strides=[16, 32])
    with pytest.raises(ConfigError, match="out_strides"):
        MobileNetV2(out_strides=[4, 8, 16])
    with pytest.raises(ConfigError, match="fpn expects 3 input levels"):
        FPN(in_channels=[8, 16, 32, 64])
    with pytest.raises(ConfigError, match="pan expects 3 input levels .* or 4"):
        PAN(in_channels=[16, 32])


@pytest.mark.parametrize("backbone", [MobileNetV2, MobileNetV3])
def test_mobilenets_tap_stride_4(backbone):
    m = backbone(width=0.5, out_strides=[4, 8, 16, 32])
    outs = m(torch.rand(1, 3, 64, 64))
    assert m.strides == [4, 8, 16, 32] and [o.shape[-1] for o in outs] == [16, 8, 4, 2]
    assert [o.shape[1] for o in outs] == m.out_channels
    three = backbone(width=0.5)
    assert three.out_channels == m.out_channels[1:] and len(three.state_dict()) == len(m.state_dict())


def test_committed_facemask_p2_anchors_compose_with_the_recipe():
    cfg = compose_config(["experiment=facemask", "model=yolov4_nano_p2", "anchors=facemask_320_p2"])
    written = OmegaConf.load(CONFIG_DIR / "anchors" / "facemask_320_p2.yaml").anchors
    assert cfg.model.name == "yolov4_nano_p2" and cfg.model.anchors == written and cfg.data.img_size == 320
    det = build_detector(cfg.model)
    assert det.strides == [4, 8, 16, 32] and det.anchors.flatten().tolist() == [float(v) for lv in written for v in lv]


def test_anchor_yaml_names_the_levels_strides():
    rng = np.random.default_rng(0)
    wh = np.concatenate([rng.normal(s, s / 10, (40, 2)) for s in (5, 9, 14, 20, 30, 45, 60, 80, 100, 130, 170, 220)])
    anchors, _, rep = fit_anchors(np.abs(wh), k=12, anchor_iou=0.213, generations=20)
    text = anchors_yaml(per_level(anchors, 4), rep, data="d", img_size=320, name="n", strides=[4, 8, 16, 32],
                        model="yolov4_nano_p2")
    assert "strides 4, 8, 16, 32" in text and "model=yolov4_nano_p2 anchors=n" in text
    assert len(OmegaConf.create(text).anchors) == 4
    with pytest.raises(ValueError, match="4 anchor levels but 3 strides"):
        anchors_yaml(per_level(anchors, 4), rep, data="d", img_size=320, name="n")


@pytest.mark.parametrize("model", [P2, ["model=yolov4_nano", "model.backbone.out_strides=[4,8,16,32]"]])
def test_kmeans_tool_fits_twelve_anchors_for_a_p2_model(model, tmp_path, capsys):
    from facedet.cli import kmeans_anchors as mod
    from facedet.data import generate_synthetic

    generate_synthetic(tmp_path / "syn", num_train=24, num_val=2, seed=0)
    cfg = compose_config([*model, f"data.root={tmp_path / 'syn'}", "data.num_train=24", "data.num_val=2",
                          "kmeans.generations=20", "kmeans.write=false"], name="kmeans_anchors")
    assert mod.run(cfg, "synthetic", "p2") is None  # the levels come from the backbone, not from the anchors
    out = capsys.readouterr().out
    assert "k=12 (4 levels, strides [4, 8, 16, 32])" in out and "data=synthetic model=p2 anchors=synthetic" in out
    fitted = _printed_anchors(out)
    assert len(fitted) == 4 and all(len(lv) == 6 for lv in fitted)


def _printed_anchors(out: str) -> list[list[int]]:
    """The ``anchors: [[...], ...]`` line the tool prints, parsed as YAML."""
    line = next(ln for ln in out.splitlines() if ln.startswith("anchors: "))
    return OmegaConf.to_container(OmegaConf.create(line)).get("anchors")


@pytest.fixture(scope="module")
def p2_run(tmp_path_factory):
    """One training step of a P2 model (run_training: loss, EMA, evaluation, checkpoints)."""
    from facedet.engine.run import run_training

    from .checkpoint_utils import TINY

    base = tmp_path_factory.mktemp("p2_run")
    cfg = compose_config([*TINY, *P2, f"data.root={base / 'synthetic'}"])
    run_training(cfg, base / "run", progress=False)
    return base / "run" / "checkpoints" / "best.pt"


def test_a_p2_checkpoint_trains_saves_and_loads_as_four_levels(p2_run):
    from facedet.inference import load_detector

    model = load_detector(p2_run)[0]
    assert model.strides == [4, 8, 16, 32] and model.anchors.shape == (4, 3, 2)
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    assert model.candidates(x)[0].shape[1] == 3 * (16 * 16 + 8 * 8 + 4 * 4 + 2 * 2)


@pytest.mark.slow  # torch's ONNX exporter takes about 35 s
@pytest.mark.skipif(any(importlib.util.find_spec(m) is None for m in ("onnx", "onnxscript", "onnxruntime")),
                    reason="the [export] extra is not installed")
def test_p2_onnx_export_matches_pytorch(p2_run, tmp_path):
    from facedet.export.onnx import compare_with_onnxruntime, export_onnx
    from facedet.inference import load_detector

    model = load_detector(p2_run)[0]
    path = export_onnx(model, tmp_path / "p2.onnx", img_size=64)
    report = compare_with_onnxruntime(model, path, [(2, 64, 64), (1, 96, 128)])
    assert report["same_shapes"] and report["boxes_compared"] == 2 * 1020 + 3 * (24 * 32 + 12 * 16 + 6 * 8 + 3 * 4)
    assert report["max_abs_box"] <= 1e-3 and report["max_abs_score"] <= 1e-3


def test_darknet_weights_fill_the_same_neck_modules_of_a_p2_pan():
    three, four = PAN(in_channels=[256, 512, 1024]), PAN(in_channels=[128, 256, 512, 1024])
    names3 = {id(m): n for n, m in three.named_modules()}
    names4 = {id(m): n for n, m in four.named_modules()}
    layout3 = [(names3[id(c)], tuple(c.conv.weight.shape), b) for c, b in three.darknet_convs()]
    layout4 = [(names4[id(c)], tuple(c.conv.weight.shape), b) for c, b in four.darknet_convs()]
    assert layout3 == layout4 and len(layout3) == 20  # the SPP block and the top-down path, none of the P2 path
