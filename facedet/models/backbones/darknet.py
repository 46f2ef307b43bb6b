"""Darknet53: YOLOv3's backbone (residual blocks, LeakyReLU), with width and depth multipliers.

``DarknetLayout`` is the part Darknet53 and YOLOv4's CSPDarknet53 share: a 3x3 stem, five stages
of (64, 128, 256, 512, 1024) channels with (1, 2, 8, 8, 4) blocks scaled by ``width`` / ``depth``
(stage ``i`` ends at stride ``2 ** (i + 1)``), DropBlock after the last three, and outputs at
``out_strides``: 8, 16, 32 by default, or 4, 8, 16, 32 for a model with a stride-4 (P2) level.
Subclasses say what a stage is.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from facedet.models.layers import ConvBNAct, DarknetBottleneck, make_divisible
from facedet.models.specials import make_dropblocks
from facedet.registry import BACKBONES, ConfigError

# darknet53.cfg and yolov4.cfg: stem channels, then per stage (channels, block count).
_STEM = 32
_STAGE_CHANNELS = (64, 128, 256, 512, 1024)
_STAGE_DEPTHS = (1, 2, 8, 8, 4)
# The output strides a neck can take: YOLOv3/v4's three levels, or those plus stride 4 (YOLOv5's P2 models).
OUT_STRIDES = ((8, 16, 32), (4, 8, 16, 32))


def check_out_strides(name: str, out_strides: Sequence[int]) -> list[int]:
    """``out_strides`` as a list of ints, or a ConfigError naming ``model.backbone.out_strides``
    and the supported values (the necks know 3 levels at 8/16/32, or 4 with stride 4 added)."""
    try:
        strides = tuple(int(s) for s in out_strides)
    except (TypeError, ValueError):
        strides = None
    if strides not in OUT_STRIDES:
        raise ConfigError(
            f"model.backbone.out_strides of {name} must be one of "
            f"{', '.join(str(list(s)) for s in OUT_STRIDES)}, got {out_strides!r}"
        )
    return list(strides)


class DarknetLayout(nn.Module):
    """Stem, five stages from ``make_stage`` and the outputs at ``out_strides`` (stage 1 gives
    stride 4, stages 2-4 strides 8-32); ``name`` and ``weights_file`` name the backbone in errors.
    Registration order (stem, stages, dropblocks) is Darknet's layer order."""

    name = "darknet"
    weights_file = "darknet weights"

    def __init__(self, *, width: float, depth: float, act: str, in_channels: int, se: bool,
                 dropblock: float, dropblock_size: int, out_strides: Sequence[int] = (8, 16, 32)) -> None:
        super().__init__()
        strides = check_out_strides(self.name, out_strides)
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
        self._taps = [s.bit_length() - 2 for s in strides]  # stride 2 ** (i + 1) is stage i's output
        self.out_channels: list[int] = [self.widths[i] for i in self._taps]
        self.strides: list[int] = strides

    def make_stage(self, index: int, c_in: int, c_out: int, blocks: int, *, act: str, se: bool) -> nn.Module:
        raise NotImplementedError

    def forward(self, x: Tensor) -> list[Tensor]:
        """``(B, C, H, W) -> [(B, c3, H/8, W/8), (B, c4, H/16, W/16), (B, c5, H/32, W/32)]``, preceded
        by ``(B, c2, H/4, W/4)`` when ``out_strides`` starts at 4."""
        x = self.stem(x)
        outs = []
        for i, stage in enumerate(self.stages):
            x = stage(x)
            if i >= 2:  # stages 3, 4, 5 sit at strides 8, 16, 32 (DropBlock there only, as before)
                x = self.drop[i - 2](x)
            if i in self._taps:
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
    at width 1); ``out_strides=[4, 8, 16, 32]`` adds the second stage's stride-4 map first (128
    channels). ``width=1, depth=1`` is the YOLOv3 feature extractor (about 40.6 M parameters, the 52
    convolutions of ``darknet53.conv.74``, in that order from ``darknet_convs``). ``se``,
    ``dropblock`` and ``dropblock_size`` as for ``cspdarknet``.
    """

    name = "darknet53"
    weights_file = "darknet53.conv.74"

    def __init__(self, *, width: float = 1.0, depth: float = 1.0, act: str = "leaky", in_channels: int = 3,
                 se: bool = False, dropblock: float = 0.0, dropblock_size: int = 7,
                 out_strides: Sequence[int] = (8, 16, 32)) -> None:
        super().__init__(width=width, depth=depth, act=act, in_channels=in_channels, se=se, dropblock=dropblock,
                         dropblock_size=dropblock_size, out_strides=out_strides)

    def make_stage(self, index: int, c_in: int, c_out: int, blocks: int, *, act: str, se: bool) -> nn.Module:
        bottlenecks = [DarknetBottleneck(c_out, c_out // 2, act=act, se=se) for _ in range(blocks)]
        return nn.Sequential(ConvBNAct(c_in, c_out, 3, 2, act=act), *bottlenecks)
