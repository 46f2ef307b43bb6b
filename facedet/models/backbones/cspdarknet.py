"""CSPDarknet: YOLOv4's CSPDarknet53 backbone, with width and depth multipliers for smaller models.

Scaled-YOLOv4 sizes are multiplier pairs: s = (width 0.50, depth 0.33), m = (0.75, 0.67),
l = (1.0, 1.0) (= CSPDarknet53).
"""

from __future__ import annotations

from torch import Tensor, nn

from facedet.models.layers import ConvBNAct, CSPStage, make_divisible
from facedet.models.specials import make_dropblocks
from facedet.registry import BACKBONES, ConfigError

# YOLOv4's CSPDarknet53: stem channels, then per stage (channels, bottleneck count).
_STEM = 32
_STAGE_CHANNELS = (64, 128, 256, 512, 1024)
_STAGE_DEPTHS = (1, 2, 8, 8, 4)


@BACKBONES.register("cspdarknet")
class CSPDarknet(nn.Module):
    """CSPDarknet53 (YOLOv4) scaled by ``width`` (channels) and ``depth`` (bottlenecks per stage).

    Input: ``(B, in_channels, H, W)`` with H and W multiples of 32.
    Output: a list of three maps at strides 8, 16 and 32, with ``out_channels`` channels
    (``[256, 512, 1024]`` at width 1). ``width=1, depth=1, act="mish"`` is exactly the YOLOv4
    feature extractor (about 26.6 M parameters).

    Options: ``se`` adds squeeze-and-excitation to every bottleneck; ``dropblock`` (final drop
    probability, 0 = off) with ``dropblock_size`` puts DropBlock after the stages at strides 8,
    16 and 32.
    """

    def __init__(
        self,
        *,
        width: float = 1.0,
        depth: float = 1.0,
        act: str = "mish",
        in_channels: int = 3,
        se: bool = False,
        dropblock: float = 0.0,
        dropblock_size: int = 7,
    ) -> None:
        super().__init__()
        if width <= 0 or depth <= 0:
            raise ConfigError(
                f"cspdarknet width and depth must be positive, got width={width}, depth={depth}"
            )
        self.widths = [make_divisible(c * width) for c in _STAGE_CHANNELS]
        self.depths = [max(1, round(n * depth)) for n in _STAGE_DEPTHS]
        self.stem = ConvBNAct(in_channels, make_divisible(_STEM * width), 3, act=act)
        stages, c_in = [], self.stem.conv.out_channels
        for i, (c, n) in enumerate(zip(self.widths, self.depths, strict=True)):
            stages.append(CSPStage(c_in, c, n, act=act, first=i == 0, se=se))
            c_in = c
        self.stages = nn.ModuleList(stages)
        self.drop = make_dropblocks(3, dropblock, dropblock_size)  # no parameters: checkpoints unchanged
        self.out_channels: list[int] = self.widths[2:]
        self.strides: list[int] = [8, 16, 32]

    def forward(self, x: Tensor) -> list[Tensor]:
        """``(B, C, H, W) -> [(B, c3, H/8, W/8), (B, c4, H/16, W/16), (B, c5, H/32, W/32)]``."""
        x = self.stem(x)
        outs = []
        for i, stage in enumerate(self.stages):
            x = stage(x)
            if i >= 2:  # stages 3, 4, 5 sit at strides 8, 16, 32
                x = self.drop[i - 2](x)
                outs.append(x)
        return outs

    def darknet_convs(self) -> list[ConvBNAct]:
        """The convolutions in the order of Darknet's ``yolov4.cfg`` (layers 0-104 of
        ``yolov4.conv.137``): the stem, then per stage downsample, shortcut split, main split,
        bottlenecks (1x1, 3x3), transition, fuse. That is this module's registration order."""
        standard = self.widths == list(_STAGE_CHANNELS) and self.depths == list(_STAGE_DEPTHS)
        if not standard or self.stem.conv.in_channels != 3:
            raise ConfigError(
                f"Darknet weights (yolov4.conv.137) fit cspdarknet only at width 1 and depth 1 with 3 input channels; "
                f"this one has stage channels {self.widths} and depths {self.depths}."
            )
        return [m for m in self.modules() if isinstance(m, ConvBNAct)]
