"""The model zoo's backbones and necks: parameter counts from the literature, taps, strides,
channels, multipliers, and the YOLOv4-tiny / YOLOv3 wiring."""

from __future__ import annotations

import pytest
import torch
from torchvision.models import mobilenet_v2, mobilenet_v3_large, mobilenet_v3_small

from facedet.models.backbones import CSPDarknet, CSPDarknetTiny, Darknet53, MobileNetV2, MobileNetV3
from facedet.models.layers import SPP, SPPF, DarknetBottleneck, count_parameters, make_pool
from facedet.models.necks import FPN, PAN, TinyFPN
from facedet.registry import BACKBONES, NECKS, ConfigError, build


def _within(n: int, ref: float, tol: float = 0.05) -> bool:
    return abs(n - ref) / ref < tol


def test_darknet53_parameter_count_matches_yolov3() -> None:
    # YOLOv3's feature extractor: darknet53's 41.6 M less its 1.03 M ImageNet classifier.
    n = count_parameters(Darknet53())
    assert _within(n, 40.6e6), n


def test_mobilenetv2_features_parameter_count() -> None:
    # MobileNetV2 (3.5 M) less its 1.28 M classifier: torchvision's ``features`` hold ~2.2 M.
    n = count_parameters(MobileNetV2(last_conv=True))
    assert _within(n, 2.2e6), n
    assert n == count_parameters(mobilenet_v2(weights=None).features)


@pytest.mark.parametrize(
    ("backbone", "channels"),
    [
        (lambda: Darknet53(width=0.25, depth=0.33), [64, 128, 256]),
        (lambda: MobileNetV2(), [32, 96, 1280]),
        (lambda: MobileNetV2(last_conv=False), [32, 96, 320]),
        (lambda: MobileNetV3(variant="large", last_conv=False), [40, 112, 160]),
        (lambda: MobileNetV3(variant="small"), [24, 48, 576]),
    ],
    ids=["darknet53-small", "mobilenetv2", "mobilenetv2-no-last-conv", "mobilenetv3-large", "mobilenetv3-small"],
)
@torch.no_grad()
def test_backbones_tap_strides_8_16_32(backbone, channels) -> None:
    m = backbone().eval()
    feats = m(torch.rand(1, 3, 128, 128))
    assert m.strides == [8, 16, 32] and m.out_channels == channels
    assert [tuple(f.shape) for f in feats] == [(1, c, 128 // s, 128 // s) for c, s in zip(channels, m.strides,
                                                                                            strict=True)]


@pytest.mark.parametrize(
    ("factory", "variant"), [(mobilenet_v3_large, "large"), (mobilenet_v3_small, "small")]
)
def test_mobilenetv3_keeps_torchvision_modules_and_names(factory, variant) -> None:
    m = MobileNetV3(variant=variant, width=0.75)
    ref = factory(weights=None, width_mult=0.75).features
    # Same modules and parameter names, so a torchvision state dict loads into it.
    assert set(m.state_dict()) == {f"features.{k}" for k in ref.state_dict()}
    m.load_state_dict({f"features.{k}": v for k, v in ref.state_dict().items()})
    assert count_parameters(m) < count_parameters(MobileNetV3(variant=variant, width=1.0))


def test_mobilenet_width_multiplier_shrinks_channels() -> None:
    half, full = MobileNetV2(width=0.5, last_conv=False), MobileNetV2(width=1.0, last_conv=False)
    assert half.out_channels == [16, 48, 160] and full.out_channels == [32, 96, 320]
    assert count_parameters(half) < 0.4 * count_parameters(full)


def test_mobilenet_bad_options() -> None:
    with pytest.raises(ConfigError, match="Did you mean 'small'"):
        build({"type": "mobilenetv3", "variant": "smal"}, BACKBONES)
    with pytest.raises(ConfigError, match="width"):
        MobileNetV2(width=0)


@torch.no_grad()
def test_cspdarknet_tiny_two_levels() -> None:
    m = CSPDarknetTiny().eval()
    c4, c5 = m(torch.rand(1, 3, 128, 128))
    assert m.strides == [16, 32] and m.out_channels == [256, 512]
    assert tuple(c4.shape) == (1, 256, 8, 8) and tuple(c5.shape) == (1, 512, 4, 4)
    # The block's "route groups=2 group_id=1": part1 sees only the second half of the 3x3 output.
    block = m.blocks[0]
    assert block.part1.conv.in_channels == block.conv.conv.out_channels // 2
    small = CSPDarknetTiny(width=0.5)
    assert small.out_channels == [128, 256] and count_parameters(small) < count_parameters(m) / 3


@torch.no_grad()
def test_tiny_fpn_shapes() -> None:
    neck = TinyFPN(in_channels=[256, 512]).eval()
    p4, p5 = neck([torch.rand(1, 256, 8, 8), torch.rand(1, 512, 4, 4)])
    assert neck.out_channels == [128, 256]
    assert tuple(p4.shape) == (1, 128, 8, 8) and tuple(p5.shape) == (1, 256, 4, 4)
    with pytest.raises(ConfigError, match="2 input levels"):
        TinyFPN(in_channels=[64, 128, 256])


@torch.no_grad()
def test_fpn_is_top_down_only() -> None:
    assert FPN(in_channels=[256, 512, 1024]).out_channels == [128, 256, 512]
    neck = FPN(in_channels=[64, 128, 256]).eval()
    feats = [torch.rand(1, c, s, s) for c, s in zip([64, 128, 256], [16, 8, 4], strict=True)]
    p3, p4, p5 = neck(feats)
    assert [tuple(p.shape[1:]) for p in (p3, p4, p5)] == [(32, 16, 16), (64, 8, 8), (128, 4, 4)]
    # Top-down only: the stride-32 output does not depend on the stride-8 input (in PAN it does).
    feats2 = [torch.rand_like(feats[0]), feats[1], feats[2]]
    assert torch.equal(neck(feats2)[2], p5)
    pan = PAN(in_channels=[64, 128, 256]).eval()
    assert not torch.equal(pan(feats2)[2], pan(feats)[2])


def test_fpn_with_spp_takes_four_times_the_channels() -> None:
    neck = FPN(in_channels=[64, 128, 256], spp="sppf")
    assert any(isinstance(m, SPPF) for m in neck.modules())
    assert count_parameters(neck) > count_parameters(FPN(in_channels=[64, 128, 256]))


@torch.no_grad()
def test_sppf_equals_spp() -> None:
    x = torch.randn(2, 8, 13, 11)
    assert torch.equal(SPPF()(x), SPP((5, 9, 13))(x))


def test_spp_option_names() -> None:
    assert isinstance(make_pool(True), SPP) and isinstance(make_pool("spp"), SPP)
    assert isinstance(make_pool("sppf"), SPPF)
    assert make_pool(False) is None and make_pool("none") is None
    with pytest.raises(ConfigError, match="Did you mean 'sppf'"):
        make_pool("spff")
    # PAN accepts all of them; SPP and SPPF have no parameters, so checkpoints are interchangeable.
    a = build({"type": "pan", "spp": "sppf"}, NECKS, in_channels=[32, 64, 128])
    b = build({"type": "pan", "spp": True}, NECKS, in_channels=[32, 64, 128])
    assert {k: v.shape for k, v in a.state_dict().items()} == {k: v.shape for k, v in b.state_dict().items()}


def test_darknet53_structure() -> None:
    m = Darknet53()
    blocks = [sum(isinstance(b, DarknetBottleneck) for b in s.modules()) for s in m.stages]
    assert blocks == [1, 2, 8, 8, 4]
    convs = m.darknet_convs()
    assert len(convs) == 52  # the 52 convolutions of darknet53.conv.74
    assert convs[1].conv.stride == (2, 2) and convs[2].conv.kernel_size == (1, 1)


def test_cspdarknet53_darknet_layout_has_72_convs() -> None:
    # yolov4.conv.137's backbone part (layers 0-104): 72 convolutions.
    convs = CSPDarknet().darknet_convs()
    assert len(convs) == 72
    # Stage 1 in yolov4.cfg order: downsample 3x3 s2, 1x1 (shortcut), 1x1 (main), 1x1 32, 3x3 64, ...
    assert [c.conv.out_channels for c in convs[1:6]] == [64, 64, 64, 32, 64]
    with pytest.raises(ConfigError, match="width 1 and depth 1"):
        CSPDarknet(width=0.5).darknet_convs()


def test_registry_knows_the_zoo() -> None:
    assert {"cspdarknet", "darknet53", "cspdarknet_tiny", "mobilenetv2", "mobilenetv3"} <= set(BACKBONES.names())
    assert {"pan", "fpn", "tiny_fpn"} <= set(NECKS.names())
    with pytest.raises(ConfigError, match="Did you mean 'darknet53'"):
        build({"type": "darknet35"}, BACKBONES)
