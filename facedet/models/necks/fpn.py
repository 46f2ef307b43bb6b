"""Top-down feature pyramids: YOLOv3's three-level FPN and YOLOv4-tiny's two-level one."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from facedet.models.layers import ConvBNAct, make_divisible, make_pool
from facedet.models.necks.pan import conv_set
from facedet.registry import NECKS, ConfigError


def _up(x: Tensor, like: Tensor) -> Tensor:
    # Upsample to the lateral's exact size (x2 for inputs that are multiples of 32).
    return F.interpolate(x, size=like.shape[-2:], mode="nearest")


def _check(name: str, in_channels: list[int], levels: int, width: float) -> None:
    if len(in_channels) != levels:
        raise ConfigError(f"{name} expects {levels} input levels, got in_channels={in_channels}")
    if width <= 0:
        raise ConfigError(f"{name} width must be positive, got {width}")


@NECKS.register("fpn")
class FPN(nn.Module):
    """YOLOv3's neck: a top-down pyramid of Darknet 5-conv sets.

    Input: three maps at strides 8, 16, 32 with ``in_channels`` (supplied by the framework).
    Output: three maps at the same strides with ``out_channels`` channels, half the input
    channels times ``width`` (``[128, 256, 512]`` for Darknet53). At stride 32 a 5-conv set; each
    finer level concatenates the upsampled 1x1 reduction of the coarser output with the backbone
    map (YOLOv3's route order: upsampled first) and runs its own 5-conv set. ``spp`` as for
    ``pan`` (YOLOv3-SPP puts SPP in the middle of the stride-32 set).
    """

    def __init__(
        self, *, in_channels: list[int], spp: bool | str = False, act: str = "leaky", width: float = 1.0
    ) -> None:
        super().__init__()
        _check("fpn", in_channels, 3, width)
        c3_in, c4_in, c5_in = in_channels
        c3, c4, c5 = (make_divisible(c / 2 * width) for c in in_channels)
        self.out_channels: list[int] = [c3, c4, c5]
        pool = make_pool(spp)
        if pool is None:
            self.c5 = conv_set(c5_in, c5, 5, act)
        else:  # 1x1, 3x3, 1x1, SPP (4x channels), 1x1, 3x3, 1x1 as in yolov3-spp.cfg
            self.c5 = nn.Sequential(*conv_set(c5_in, c5, 3, act), pool, *conv_set(4 * c5, c5, 3, act))
        self.reduce5 = ConvBNAct(c5, c4, 1, act=act)
        self.c4 = conv_set(c4 + c4_in, c4, 5, act)
        self.reduce4 = ConvBNAct(c4, c3, 1, act=act)
        self.c3 = conv_set(c3 + c3_in, c3, 5, act)

    def forward(self, feats: list[Tensor]) -> list[Tensor]:
        """``[C3, C4, C5]`` (strides 8, 16, 32) -> ``[P3, P4, P5]`` with ``out_channels`` channels."""
        x3, x4, x5 = feats
        p5 = self.c5(x5)
        p4 = self.c4(torch.cat((_up(self.reduce5(p5), x4), x4), 1))
        p3 = self.c3(torch.cat((_up(self.reduce4(p4), x3), x3), 1))
        return [p3, p4, p5]


@NECKS.register("tiny_fpn")
class TinyFPN(nn.Module):
    """YOLOv4-tiny's neck over two levels (strides 16 and 32).

    Input: ``in_channels`` ``[c4, c5]`` (supplied by the framework). Stride 32: a 1x1 conv to
    ``c5 / 2 * width`` channels (the head's 3x3 doubles it back, as in ``yolov4-tiny.cfg``).
    Stride 16: that map reduced by a 1x1 conv to half, upsampled and concatenated with the
    backbone map, then fused by a 1x1 conv to ``c4 / 2 * width`` channels. The fuse conv is ours:
    the shared YOLO head's 3x3 conv doubles its input, so it keeps the head at Darknet's 256
    channels at width 1 (Darknet instead runs its 3x3 conv on the 384-channel concatenation).
    Output: ``[P4, P5]`` with ``out_channels`` (``[128, 256]`` at width 1).
    """

    def __init__(self, *, in_channels: list[int], act: str = "leaky", width: float = 1.0) -> None:
        super().__init__()
        _check("tiny_fpn", in_channels, 2, width)
        c4_in, c5_in = in_channels
        c4, c5 = (make_divisible(c / 2 * width) for c in in_channels)
        self.out_channels: list[int] = [c4, c5]
        self.reduce5 = ConvBNAct(c5_in, c5, 1, act=act)
        self.up5 = ConvBNAct(c5, make_divisible(c5 / 2), 1, act=act)
        self.fuse4 = ConvBNAct(make_divisible(c5 / 2) + c4_in, c4, 1, act=act)

    def forward(self, feats: list[Tensor]) -> list[Tensor]:
        """``[C4, C5]`` (strides 16, 32) -> ``[P4, P5]``."""
        x4, x5 = feats
        p5 = self.reduce5(x5)
        p4 = self.fuse4(torch.cat((_up(self.up5(p5), x4), x4), 1))
        return [p4, p5]
