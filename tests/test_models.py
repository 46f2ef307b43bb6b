"""Backbone, neck and head: parameter counts, shapes, multipliers, registry building, decoding."""

from __future__ import annotations

import math

import pytest
import torch

from facedet.models.backbones import CSPDarknet
from facedet.models.heads import YOLOHead
from facedet.models.layers import CSPStage, DarknetBottleneck, count_parameters, make_act, make_divisible
from facedet.models.necks import PAN
from facedet.registry import BACKBONES, HEADS, NECKS, ConfigError, build

ANCHORS = [[10, 13, 16, 30, 33, 23], [30, 61, 62, 45, 59, 119], [116, 90, 156, 198, 373, 326]]
STRIDES = [8, 16, 32]
SMALL = {"width": 0.25, "depth": 0.33}


def _small_model() -> tuple[CSPDarknet, PAN, YOLOHead]:
    backbone = CSPDarknet(**SMALL)
    neck = PAN(in_channels=backbone.out_channels, width=0.5)
    head = YOLOHead(in_channels=neck.out_channels, anchors=ANCHORS, strides=STRIDES)
    return backbone.eval(), neck.eval(), head.eval()


def test_cspdarknet53_parameter_count_matches_yolov4() -> None:
    # YOLOv4's feature extractor: timm's cspdarknet53 (27.64 M) less its 1.03 M classifier.
    n = count_parameters(CSPDarknet())
    assert abs(n - 26.6e6) / 26.6e6 < 0.05, n


def test_full_yolov4_neck_and_head_channels() -> None:
    backbone = CSPDarknet()
    neck = PAN(in_channels=backbone.out_channels)
    assert backbone.out_channels == [256, 512, 1024]
    assert neck.out_channels == [128, 256, 512]
    assert backbone.depths == [1, 2, 8, 8, 4]


def test_first_stage_is_special() -> None:
    first, second = CSPDarknet().stages[:2]
    # First stage: split paths keep 64 channels, bottleneck narrows to 32.
    assert first.split_main.conv.out_channels == 64
    assert first.blocks[0].cv1.conv.out_channels == 32
    # Later stages: paths halve (128 -> 64), bottlenecks keep that width.
    assert second.split_main.conv.out_channels == 64
    assert second.blocks[0].cv1.conv.out_channels == 64


@pytest.mark.parametrize(
    ("width", "depth", "channels", "depths"),
    [
        (0.5, 0.33, [128, 256, 512], [1, 1, 3, 3, 1]),
        (0.25, 0.5, [64, 128, 256], [1, 1, 4, 4, 2]),
        (0.05, 1.0, [16, 32, 56], [1, 2, 8, 8, 4]),  # make_divisible floors channels at 8
    ],
)
def test_width_depth_multipliers(width: float, depth: float, channels: list[int], depths: list[int]) -> None:
    m = CSPDarknet(width=width, depth=depth)
    assert m.out_channels == channels
    stages = [s for s in m.modules() if isinstance(s, CSPStage)]
    blocks = [sum(isinstance(b, DarknetBottleneck) for b in s.modules()) for s in stages]
    assert blocks == depths
    assert count_parameters(m) < count_parameters(CSPDarknet(width=1.0, depth=depth))


def test_make_divisible() -> None:
    assert make_divisible(64 * 0.25) == 16
    assert make_divisible(1.0) == 8
    assert make_divisible(20) == 24


@torch.no_grad()
def test_output_shapes_at_128px() -> None:
    backbone, neck, head = _small_model()
    x = torch.rand(2, 3, 128, 128)
    feats = backbone(x)
    assert [tuple(f.shape) for f in feats] == [(2, 64, 16, 16), (2, 128, 8, 8), (2, 256, 4, 4)]
    necked = neck(feats)
    assert [tuple(f.shape) for f in necked] == [(2, 16, 16, 16), (2, 32, 8, 8), (2, 64, 4, 4)]
    raws = head(necked)
    assert [tuple(r.shape) for r in raws] == [(2, 3, 16, 16, 5), (2, 3, 8, 8, 5), (2, 3, 4, 4, 5)]
    assert all(r.is_contiguous() for r in raws)


@torch.no_grad()
def test_neck_without_spp_and_extra_outputs() -> None:
    neck = PAN(in_channels=[32, 64, 128], spp=False).eval()
    feats = [torch.rand(1, c, s, s) for c, s in zip([32, 64, 128], [8, 4, 2], strict=True)]
    outs = neck(feats)
    assert [o.shape[1] for o in outs] == neck.out_channels == [16, 32, 64]
    head = YOLOHead(in_channels=neck.out_channels, anchors=ANCHORS, strides=STRIDES, num_outputs=15).eval()
    assert tuple(head(outs)[0].shape) == (1, 3, 8, 8, 15)


def test_build_through_registry() -> None:
    backbone = build({"type": "cspdarknet", **SMALL}, BACKBONES)
    assert isinstance(backbone, CSPDarknet) and backbone.out_channels == [64, 128, 256]
    neck = build({"type": "pan", "width": 0.5}, NECKS, in_channels=backbone.out_channels)
    assert isinstance(neck, PAN) and neck.out_channels == [16, 32, 64]
    head = build(
        {"type": "yolo_head", "scale_x_y": [1.2, 1.1, 1.05], "wh_mode": "sigmoid"},
        HEADS,
        in_channels=neck.out_channels,
        anchors=ANCHORS,
        strides=STRIDES,
    )
    assert isinstance(head, YOLOHead)
    assert head.scale_x_y == [1.2, 1.1, 1.05] and head.wh_mode == "sigmoid" and head.num_anchors == 3
    assert tuple(head.anchors.shape) == (3, 3, 2) and "anchors" in head.state_dict()


def test_typo_key_raises_config_error() -> None:
    with pytest.raises(ConfigError, match="widht") as err:
        build({"type": "cspdarknet", "widht": 0.25}, BACKBONES)
    assert "Did you mean 'width'" in str(err.value)


def test_unknown_activation() -> None:
    with pytest.raises(ConfigError, match="mishh") as err:
        make_act("mishh")
    assert "'mish'" in str(err.value)
    with pytest.raises(ConfigError, match="Unknown activation"):
        build({"type": "cspdarknet", "act": "mishh"}, BACKBONES)


def test_bad_head_arguments() -> None:
    with pytest.raises(ConfigError, match="scale_x_y"):
        YOLOHead(in_channels=[8, 8, 8], anchors=ANCHORS, strides=STRIDES, scale_x_y=[1.1, 1.2])
    with pytest.raises(ConfigError, match="wh_mode"):
        YOLOHead(in_channels=[8, 8, 8], anchors=ANCHORS, strides=STRIDES, wh_mode="linear")
    with pytest.raises(ConfigError, match="per level"):
        YOLOHead(in_channels=[8, 8], anchors=ANCHORS, strides=STRIDES)


@pytest.mark.parametrize("wh_mode", ["exp", "sigmoid"])
def test_decode_zero_raw_centres_on_cells(wh_mode: str) -> None:
    head = YOLOHead(in_channels=[8, 8, 8], anchors=ANCHORS, strides=STRIDES, scale_x_y=1.2, wh_mode=wh_mode)
    raws = [torch.zeros(2, 3, s, s, 5) for s in (16, 8, 4)]
    boxes, scores, _ = head.decode(raws)
    assert boxes.shape == (2, 3 * (256 + 64 + 16), 4) and scores.shape == (2, 3 * (256 + 64 + 16))
    assert torch.allclose(scores, torch.full_like(scores, 0.5))
    # sigmoid(0) = 0.5 puts the centre at the cell middle whatever scale_x_y; exp(0) = (2 * 0.5)^2 = 1
    # gives the anchor size. Order: level, anchor, row, column.
    # Level 0, anchor 1 (16x30), row 2, column 5: centre (5.5 * 8, 2.5 * 8) = (44, 20).
    i = 1 * 256 + 2 * 16 + 5
    assert torch.allclose(boxes[0, i], torch.tensor([44 - 8, 20 - 15, 44 + 8, 20 + 15.0]))
    # Level 2, anchor 2 (373x326), row 3, column 0: centre (0.5 * 32, 3.5 * 32) = (16, 112).
    j = 3 * 256 + 3 * 64 + 2 * 16 + 3 * 4 + 0
    assert torch.allclose(boxes[1, j], torch.tensor([16 - 186.5, 112 - 163, 16 + 186.5, 112 + 163.0]))


def test_decode_uses_per_level_scale_and_stride() -> None:
    head = YOLOHead(in_channels=[8, 8, 8], anchors=ANCHORS, strides=STRIDES, scale_x_y=[2.0, 1.0, 1.0])
    raws = [torch.zeros(1, 3, s, s, 5) for s in (4, 2, 1)]
    raws[0][0, 0, 0, 0, 0] = 10.0  # sigmoid ~ 1: with scale 2 the centre moves to the next cell's middle
    boxes, _, _ = head.decode(raws)
    cx = (boxes[0, 0, 0] + boxes[0, 0, 2]) / 2
    assert abs(cx.item() - (2 * torch.sigmoid(torch.tensor(10.0)).item() - 0.5) * 8) < 1e-4
    assert cx.item() > 11.9


@torch.no_grad()
def test_objectness_bias_init() -> None:
    prior = 0.02
    head = YOLOHead(in_channels=[8, 16, 32], anchors=ANCHORS, strides=STRIDES, obj_prior=prior).eval()
    bias = head.preds[0].bias.view(3, 5)
    assert torch.all(bias[:, :4] == 0)
    assert torch.allclose(bias[:, 4], torch.full((3,), math.log(prior / (1 - prior))))
    # Zero features give raw == bias (BN in eval at init is the identity; leaky(0) = 0).
    raws = head([torch.zeros(1, c, s, s) for c, s in zip([8, 16, 32], [4, 2, 1], strict=True)])
    _, scores, _ = head.decode(raws)
    assert torch.allclose(scores, torch.full_like(scores, prior), atol=1e-6)


def test_anchor_tensor_input_and_checkpoint_round_trip() -> None:
    head = YOLOHead(in_channels=[8, 8, 8], anchors=torch.tensor(ANCHORS).view(3, 3, 2), strides=STRIDES)
    other = YOLOHead(in_channels=[8, 8, 8], anchors=[[1, 1] * 3] * 3, strides=STRIDES)
    other.load_state_dict(head.state_dict())
    assert torch.equal(other.anchors, head.anchors) and other.anchors[2, 2].tolist() == [373, 326]
