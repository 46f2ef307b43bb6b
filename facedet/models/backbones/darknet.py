"""Darknet53: YOLOv3's backbone (residual blocks, LeakyReLU), with width and depth multipliers.

``DarknetLayout`` is the part Darknet53 and YOLOv4's CSPDarknet53 share: a 3x3 stem, five stages
of (64, 128, 256, 512, 1024) channels with (1, 2, 8, 8, 4) blocks scaled by ``width`` / ``depth``,
DropBlock after the last three, and outputs at strides 8, 16, 32. Subclasses say what a stage is.
"""

from __future__ import annotations

from torch import Tensor, nn

from facedet.models.layers import ConvBNAct, DarknetBottleneck, make_divisible
from facedet.models.specials import make_dropblocks
from facedet.registry import BACKBONES, ConfigError

# darknet53.cfg and yolov4.cfg: stem channels, then per stage (channels, block count).
_STEM = 32
_STAGE_CHANNELS = (64, 128, 256, 512, 1024)
_STAGE_DEPTHS = (1, 2, 8, 8, 4)


class DarknetLayout(nn.Module):
    """Stem, five stages from ``make_stage`` and three outputs; ``name`` and ``weights_file`` name
    the backbone in errors. Registration order (stem, stages, dropblocks) is Darknet's layer order."""

    name = "darknet"
    weights_file = "darknet weights"

    def __init__(self, *, width: float, depth: float, act: str, in_channels: int, se: bool,
                 dropblock: float, dropblock_size: int) -> None:
        super().__init__()
        if width <= 0 or depth <= 0:
            raise ConfigError(f"{self.name} width and depth must be positive, got width={width}, depth={depth}")
        self.widths = [make_divisible(c * width) for c in _STAGE_CHANNELS]
        self.depths = [max(1, round(n * depth)) for n in _STAGE_DEPTHS]
        self.stem = ConvBNAct(in_channels, make_divisible(_STEM * width), 3, act=act)
        stages, c_in = [], self.stem.conv.out_channels
        for i, (c, n) in enumerate(zip(self.widths, self.depths, strict=True)):
            stages.append(self.make_stage(i, c_in, c, n, act=act, se=se))
            c_in = c
        self.stages = nn.ModuleList(stages)
        self.drop = make_dropblocks(3, dropblock, dropblock_size)  # no parameters: checkpoints unchanged
        self.out_channels: list[int] = self.widths[2:]
        self.strides: list[int] = [8, 16, 32]

    def make_stage(self, index: int, c_in: int, c_out: int, blocks: int, *, act: str, se: bool) -> nn.Module:
        raise NotImplementedError

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
        """The convolutions in the order of the Darknet cfg, which is this module's registration order."""
        standard = self.widths == list(_STAGE_CHANNELS) and self.depths == list(_STAGE_DEPTHS)
        if not standard or self.stem.conv.in_channels != 3:
            raise ConfigError(
                f"Darknet weights ({self.weights_file}) fit {self.name} only at width 1 and depth 1 with 3 input "
                f"channels; this one has stage channels {self.widths} and depths {self.depths}."
            )
        return [m for m in self.modules() if isinstance(m, ConvBNAct)]


@BACKBONES.register("darknet53")
class Darknet53(DarknetLayout):
    """Darknet53 (YOLOv3): a 3x3 stem, then five stages of a 3x3 stride-2 conv and ``n`` residual
    blocks (1x1 to half the channels, 3x3 back, plus the input).

    Input: ``(B, in_channels, H, W)`` with H and W multiples of 32.
    Output: three maps at strides 8, 16, 32 with ``out_channels`` channels (``[256, 512, 1024]``
    at width 1). ``width=1, depth=1`` is the YOLOv3 feature extractor (about 40.6 M parameters,
    the 52 convolutions of ``darknet53.conv.74``, in that order from ``darknet_convs``). ``se``,
    ``dropblock`` and ``dropblock_size`` as for ``cspdarknet``.
    """

    name = "darknet53"
    weights_file = "darknet53.conv.74"

    def __init__(self, *, width: float = 1.0, depth: float = 1.0, act: str = "leaky", in_channels: int = 3,
                 se: bool = False, dropblock: float = 0.0, dropblock_size: int = 7) -> None:
        super().__init__(width=width, depth=depth, act=act, in_channels=in_channels, se=se, dropblock=dropblock,
                         dropblock_size=dropblock_size)

    def make_stage(self, index: int, c_in: int, c_out: int, blocks: int, *, act: str, se: bool) -> nn.Module:
        bottlenecks = [DarknetBottleneck(c_out, c_out // 2, act=act, se=se) for _ in range(blocks)]
        return nn.Sequential(ConvBNAct(c_in, c_out, 3, 2, act=act), *bottlenecks)
