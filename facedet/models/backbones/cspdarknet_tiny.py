"""CSPDarknet-tiny: the backbone of YOLOv4-tiny (``yolov4-tiny.cfg``, layers 0-26)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from facedet.models.layers import ConvBNAct, make_divisible
from facedet.models.specials import make_dropblocks
from facedet.registry import BACKBONES, ConfigError

# yolov4-tiny.cfg: two stride-2 stem convs (32, 64), then three tiny CSP blocks of 64, 128, 256
# channels separated by 2x2 max-pools, then a 3x3 conv of 512 channels.
_STEM = (32, 64)
_BLOCKS = (64, 128, 256)
_LAST = 512


class TinyCSPBlock(nn.Module):
    """One YOLOv4-tiny CSP block at ``c`` channels: ``(B, c_in, H, W) -> (B, 2c, H, W), (B, c, H, W)``.

    A 3x3 conv to ``c``; its second channel half (Darknet's ``route groups=2 group_id=1``) runs two
    3x3 convs of ``c/2`` whose outputs are concatenated (second first) and fused by a 1x1 conv to
    ``c``; the block returns the 3x3 output concatenated with that fused map (``2c``), and the fused
    map itself (YOLOv4-tiny taps it at stride 16).
    """

    def __init__(self, c_in: int, c: int, act: str = "leaky") -> None:
        super().__init__()
        self.conv = ConvBNAct(c_in, c, 3, act=act)
        self.part1 = ConvBNAct(c // 2, c // 2, 3, act=act)
        self.part2 = ConvBNAct(c // 2, c // 2, 3, act=act)
        self.fuse = ConvBNAct(c, c, 1, act=act)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        x = self.conv(x)
        a = self.part1(x[:, x.shape[1] // 2 :])
        b = self.part2(a)
        fused = self.fuse(torch.cat((b, a), 1))
        return torch.cat((x, fused), 1), fused


@BACKBONES.register("cspdarknet_tiny")
class CSPDarknetTiny(nn.Module):
    """CSPDarknet-tiny (YOLOv4-tiny), channels scaled by ``width``.

    Input: ``(B, in_channels, H, W)`` with H and W multiples of 32.
    Output: two maps, at strides 16 and 32, with ``out_channels`` channels (``[256, 512]`` at
    width 1): the last block's fused map and the final 3x3 conv. ``dropblock`` and
    ``dropblock_size`` as for ``cspdarknet``.
    """

    def __init__(
        self,
        *,
        width: float = 1.0,
        act: str = "leaky",
        in_channels: int = 3,
        dropblock: float = 0.0,
        dropblock_size: int = 7,
    ) -> None:
        super().__init__()
        if width <= 0:
            raise ConfigError(f"cspdarknet_tiny width must be positive, got {width}")
        s1, s2 = (make_divisible(c * width) for c in _STEM)
        self.stem = nn.Sequential(ConvBNAct(in_channels, s1, 3, 2, act=act), ConvBNAct(s1, s2, 3, 2, act=act))
        blocks, c_in = [], s2
        for c in (make_divisible(c * width) for c in _BLOCKS):
            blocks.append(TinyCSPBlock(c_in, c, act=act))
            c_in = 2 * c
        self.blocks = nn.ModuleList(blocks)
        self.last = ConvBNAct(c_in, make_divisible(_LAST * width), 3, act=act)
        self.drop = make_dropblocks(2, dropblock, dropblock_size)
        self.out_channels: list[int] = [blocks[-1].fuse.conv.out_channels, self.last.conv.out_channels]
        self.strides: list[int] = [16, 32]

    def forward(self, x: Tensor) -> list[Tensor]:
        """``(B, C, H, W) -> [(B, c4, H/16, W/16), (B, c5, H/32, W/32)]``."""
        x = self.stem(x)  # stride 4
        fused = x
        for block in self.blocks:
            x, fused = block(x)
            x = F.max_pool2d(x, 2, 2)  # strides 8, 16, 32 after the three blocks
        c4 = self.drop[0](fused)
        c5 = self.drop[1](self.last(x))
        return [c4, c5]
