"""YOLOv4's neck: SPP on the deepest map, then a PANet top-down and bottom-up path; with a fourth,
stride-4 input the paths reach stride 4 as in YOLOv5's P2 models (``yolov5-p2.yaml``)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from facedet.models.layers import ConvBNAct, make_divisible, make_pool
from facedet.registry import NECKS, ConfigError


def conv_set(c_in: int, c: int, n: int, act: str) -> nn.Sequential:
    """Darknet's alternating conv set: 1x1 (-> c), 3x3 (-> 2c), 1x1 (-> c), ... ``n`` convs, n odd."""
    layers = []
    for i in range(n):
        k = 1 if i % 2 == 0 else 3
        c_out = c if k == 1 else 2 * c
        layers.append(ConvBNAct(c_in, c_out, k, act=act))
        c_in = c_out
    return nn.Sequential(*layers)


@NECKS.register("pan")
class PAN(nn.Module):
    """SPP + PANet neck of YOLOv4.

    Input: three backbone maps at strides 8, 16, 32 with ``in_channels`` channels (supplied by the
    framework). Output: three maps at the same strides with ``out_channels`` channels, half the
    input channels per level times ``width`` (``[128, 256, 512]`` for YOLOv4's ``[256, 512, 1024]``).
    ``spp``: ``true``/``"spp"`` (max-pools 5, 9, 13), ``"sppf"`` (the same output from three chained
    5x5 pools, faster) or ``false``/``"none"``.

    Four inputs (strides 4, 8, 16, 32: the backbone's ``out_strides=[4, 8, 16, 32]``) add a P2 level
    as in YOLOv5's P2 models: the top-down path continues to stride 4 with a lateral from C2
    (``reduce3``, ``lateral2``, ``td2``) and the bottom-up path starts there (``down2``, ``bu3``), so
    the stride-8 output is the bottom-up ``bu3`` instead of the top-down ``td3``. Output: four maps,
    fine to coarse. The three-level modules keep their names and shapes either way.
    """

    def __init__(
        self, *, in_channels: list[int], spp: bool | str = True, act: str = "leaky", width: float = 1.0
    ) -> None:
        super().__init__()
        if len(in_channels) not in (3, 4):
            raise ConfigError(
                f"pan expects 3 input levels (strides 8, 16, 32) or 4 (strides 4, 8, 16, 32: "
                f"model.backbone.out_strides), got in_channels={in_channels}"
            )
        if width <= 0:
            raise ConfigError(f"pan width must be positive, got {width}")
        c3_in, c4_in, c5_in = in_channels[-3:]
        outs = [make_divisible(c / 2 * width) for c in in_channels]
        c3, c4, c5 = outs[-3:]
        self.in_channels = list(in_channels)
        self.out_channels: list[int] = outs

        # Deepest level: 1x1/3x3/1x1, SPP (4x channels), 1x1/3x3/1x1.
        self.c5_pre = conv_set(c5_in, c5, 3, act)
        pool = make_pool(spp)
        self.spp = pool if pool is not None else nn.Identity()
        self.c5_post = conv_set(4 * c5 if pool is not None else c5, c5, 3, act)

        # Top-down: reduce the coarser map, upsample, concat with a 1x1 lateral, 5-conv set.
        self.reduce5 = ConvBNAct(c5, c4, 1, act=act)
        self.lateral4 = ConvBNAct(c4_in, c4, 1, act=act)
        self.td4 = conv_set(2 * c4, c4, 5, act)
        self.reduce4 = ConvBNAct(c4, c3, 1, act=act)
        self.lateral3 = ConvBNAct(c3_in, c3, 1, act=act)
        self.td3 = conv_set(2 * c3, c3, 5, act)

        # Bottom-up: 3x3 stride-2 downsample, concat with the top-down map, 5-conv set.
        self.down3 = ConvBNAct(c3, c4, 3, 2, act=act)
        self.bu4 = conv_set(2 * c4, c4, 5, act)
        self.down4 = ConvBNAct(c4, c5, 3, 2, act=act)
        self.bu5 = conv_set(2 * c5, c5, 5, act)

        self.p2 = len(in_channels) == 4
        if self.p2:  # registered after the three-level modules: their order and names stay as they were
            c2_in, c2 = in_channels[0], outs[0]
            self.reduce3 = ConvBNAct(c3, c2, 1, act=act)
            self.lateral2 = ConvBNAct(c2_in, c2, 1, act=act)
            self.td2 = conv_set(2 * c2, c2, 5, act)
            self.down2 = ConvBNAct(c2, c3, 3, 2, act=act)
            self.bu3 = conv_set(2 * c3, c3, 5, act)

    @staticmethod
    def _up(x: Tensor, like: Tensor) -> Tensor:
        # Upsample to the lateral's exact size (x2 for inputs that are multiples of 32).
        return F.interpolate(x, size=like.shape[-2:], mode="nearest")

    def forward(self, feats: list[Tensor]) -> list[Tensor]:
        """``[C3, C4, C5]`` (strides 8, 16, 32) -> ``[N3, N4, N5]`` with ``out_channels`` channels;
        ``[C2, C3, C4, C5]`` -> ``[N2, N3, N4, N5]``."""
        x3, x4, x5 = feats[-3:]
        p5 = self.c5_post(self.spp(self.c5_pre(x5)))
        l4 = self.lateral4(x4)
        p4 = self.td4(torch.cat((l4, self._up(self.reduce5(p5), l4)), 1))
        l3 = self.lateral3(x3)
        n3 = self.td3(torch.cat((l3, self._up(self.reduce4(p4), l3)), 1))
        outs = []
        if self.p2:  # top-down on to stride 4, then bottom-up from there back to stride 8
            l2 = self.lateral2(feats[0])
            n2 = self.td2(torch.cat((l2, self._up(self.reduce3(n3), l2)), 1))
            n3 = self.bu3(torch.cat((self.down2(n2), n3), 1))
            outs.append(n2)
        n4 = self.bu4(torch.cat((self.down3(n3), p4), 1))
        n5 = self.bu5(torch.cat((self.down4(n4), p5), 1))
        return [*outs, n3, n4, n5]

    def darknet_convs(self) -> list[tuple[ConvBNAct, int]]:
        """The convolutions ``yolov4.conv.137`` holds after the backbone (layers 105-136: the SPP
        block and the top-down path), in file order, each with the number of input-channel blocks
        Darknet concatenates in the opposite order (``[maxpool13, maxpool9, maxpool5, input]``
        for the conv after SPP, 1 for the others). The bottom-up path comes later in ``yolov4.cfg``,
        interleaved with the head, and is not part of the layout. Empty unless this is YOLOv4's
        neck: SPP or SPPF on, width 1 (so the file cannot fill a different neck with shifted values).
        A P2 neck has the same modules (its P2 path is new, and starts from ``td3``'s output)."""
        if isinstance(self.spp, nn.Identity) or self.out_channels != [c // 2 for c in self.in_channels]:
            return []
        convs = [*self.c5_pre, *self.c5_post, self.reduce5, self.lateral4, *self.td4, self.reduce4,
                 self.lateral3, *self.td3]
        return [(c, 4 if c is self.c5_post[0] else 1) for c in convs]
