"""CSPDarknet: YOLOv4's CSPDarknet53 backbone, with width and depth multipliers for smaller models.

Scaled-YOLOv4 sizes are multiplier pairs: s = (width 0.50, depth 0.33), m = (0.75, 0.67),
l = (1.0, 1.0) (= CSPDarknet53).
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from facedet.models.backbones.darknet import DarknetLayout
from facedet.models.layers import CSPStage
from facedet.registry import BACKBONES


@BACKBONES.register("cspdarknet")
class CSPDarknet(DarknetLayout):
    """CSPDarknet53 (YOLOv4) scaled by ``width`` (channels) and ``depth`` (bottlenecks per stage).

    Input: ``(B, in_channels, H, W)`` with H and W multiples of 32.
    Output: a list of three maps at strides 8, 16 and 32, with ``out_channels`` channels
    (``[256, 512, 1024]`` at width 1). ``width=1, depth=1, act="mish"`` is exactly the YOLOv4
    feature extractor (about 26.6 M parameters; ``darknet_convs`` gives layers 0-104 of
    ``yolov4.conv.137`` in order: per stage downsample, shortcut split, main split, bottlenecks,
    transition, fuse).

    Options: ``se`` adds squeeze-and-excitation to every bottleneck; ``dropblock`` (final drop
    probability, 0 = off) with ``dropblock_size`` puts DropBlock after the stages at strides 8,
    16 and 32; ``out_strides=[4, 8, 16, 32]`` adds the second stage's stride-4 map as a first output
    (for a P2 level; 128 channels at width 1).
    """

    name = "cspdarknet"
    weights_file = "yolov4.conv.137"

    def __init__(self, *, width: float = 1.0, depth: float = 1.0, act: str = "mish", in_channels: int = 3,
                 se: bool = False, dropblock: float = 0.0, dropblock_size: int = 7,
                 out_strides: Sequence[int] = (8, 16, 32)) -> None:
        super().__init__(width=width, depth=depth, act=act, in_channels=in_channels, se=se, dropblock=dropblock,
                         dropblock_size=dropblock_size, out_strides=out_strides)

    def make_stage(self, index: int, c_in: int, c_out: int, blocks: int, *, act: str, se: bool) -> nn.Module:
        return CSPStage(c_in, c_out, blocks, act=act, first=index == 0, se=se)
