"""Building blocks shared by backbones, necks and heads.

All convolutions are ``ConvBNAct``: Conv2d (no bias, "same" padding) + BatchNorm2d + activation,
with the BN settings YOLOv4/v5 train with (eps=1e-3, momentum=0.03). Activations and pooling blocks
are registered by name (``facedet.registry.ACTIVATIONS``, ``POOLS``), so a config says ``act: mish``
and a typo fails with a suggestion.
"""

from __future__ import annotations

import math
from functools import partial

import torch
from torch import Tensor, nn
from torchvision.ops import SqueezeExcitation

from facedet.registry import ACTIVATIONS, POOLS, ConfigError

# Factories, not instances: every layer needs its own module. Inplace is safe here because each
# activation directly follows a BatchNorm whose output nobody else reads.
ACTIVATIONS.register("mish")(partial(nn.Mish, inplace=True))
ACTIVATIONS.register("leaky")(partial(nn.LeakyReLU, 0.1, inplace=True))  # Darknet's leaky slope
ACTIVATIONS.register("silu")(partial(nn.SiLU, inplace=True))
ACTIVATIONS.register("relu")(partial(nn.ReLU, inplace=True))
ACTIVATIONS.register("hardswish")(partial(nn.Hardswish, inplace=True))
ACTIVATIONS.register("sigmoid")(nn.Sigmoid)  # Darknet's "logistic": the attention map of SAM
ACTIVATIONS.register("identity")(nn.Identity)


def make_act(name: str) -> nn.Module:
    """A fresh activation module for ``name`` (registered in ``ACTIVATIONS``); ConfigError otherwise."""
    return ACTIVATIONS.get(str(name), where="act")()


def make_divisible(x: float, divisor: int = 8) -> int:
    """Round a (width-scaled) channel count up to a multiple of ``divisor``, at least ``divisor``."""
    return max(divisor, int(math.ceil(x / divisor) * divisor))


class ConvBNAct(nn.Module):
    """Conv2d(k, s, padding k//2, no bias) -> BatchNorm2d -> activation. ``(B, c_in, H, W) -> (B, c_out,
    H/s, W/s)``."""

    def __init__(self, c_in: int, c_out: int, k: int = 1, s: int = 1, act: str = "mish") -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, k, s, padding=k // 2, bias=False)
        self.bn = nn.BatchNorm2d(c_out, eps=1e-3, momentum=0.03)
        self.act = make_act(act)

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.bn(self.conv(x)))


class DarknetBottleneck(nn.Module):
    """Darknet residual block: 1x1 (c -> hidden), 3x3 (hidden -> c), plus the input. Shape-preserving.

    ``se=True`` re-weights the branch's channels with a squeeze-and-excitation block before the
    addition (as SE-ResNet does).
    """

    def __init__(self, c: int, hidden: int, act: str = "mish", se: bool = False) -> None:
        super().__init__()
        self.cv1 = ConvBNAct(c, hidden, 1, act=act)
        self.cv2 = ConvBNAct(hidden, c, 3, act=act)
        if se:
            self.se = make_se(c)

    def forward(self, x: Tensor) -> Tensor:
        y = self.cv2(self.cv1(x))
        if hasattr(self, "se"):
            y = self.se(y)
        return x + y


class CSPStage(nn.Module):
    """One CSPDarknet53 stage: ``(B, c_in, H, W) -> (B, c_out, H/2, W/2)``.

    A 3x3 stride-2 conv downsamples; two 1x1 convs split the result into a shortcut path and a
    main path; the main path runs ``n`` bottlenecks and a 1x1 transition; the two are concatenated
    and fused by a 1x1 conv. In YOLOv4's first stage (``first=True``) each path keeps all
    ``c_out`` channels and the bottleneck narrows to ``c_out // 2``; later stages halve the
    channels on each path and their bottlenecks keep that width.
    """

    def __init__(
        self, c_in: int, c_out: int, n: int, act: str = "mish", first: bool = False, se: bool = False
    ) -> None:
        super().__init__()
        c_path = c_out if first else max(1, c_out // 2)
        hidden = max(1, c_out // 2)  # = c_path in later stages, half of it in the first
        self.down = ConvBNAct(c_in, c_out, 3, 2, act=act)
        self.split_short = ConvBNAct(c_out, c_path, 1, act=act)
        self.split_main = ConvBNAct(c_out, c_path, 1, act=act)
        self.blocks = nn.Sequential(*(DarknetBottleneck(c_path, hidden, act=act, se=se) for _ in range(n)))
        self.transition = ConvBNAct(c_path, c_path, 1, act=act)
        self.fuse = ConvBNAct(2 * c_path, c_out, 1, act=act)

    def forward(self, x: Tensor) -> Tensor:
        x = self.down(x)
        main = self.transition(self.blocks(self.split_main(x)))
        # Darknet's route order: main path first, then the shortcut.
        return self.fuse(torch.cat((main, self.split_short(x)), 1))


class SPP(nn.Module):
    """Spatial pyramid pooling (YOLOv4): the input concatenated with stride-1 max-pools of sizes 5, 9,
    13. ``(B, C, H, W) -> (B, C * (1 + len(kernels)), H, W)``."""

    def __init__(self, kernels: tuple[int, ...] = (5, 9, 13)) -> None:
        super().__init__()
        self.pools = nn.ModuleList(nn.MaxPool2d(k, 1, padding=k // 2) for k in kernels)

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([x] + [p(x) for p in self.pools], 1)


class SPPF(nn.Module):
    """SPP-fast (YOLOv5): three chained 5x5 stride-1 max-pools. Pooling twice with 5x5 equals one 9x9
    pool and three times one 13x13, so the output is exactly ``SPP((5, 9, 13))``'s at a fraction of
    the comparisons. ``(B, C, H, W) -> (B, 4C, H, W)``."""

    def __init__(self, k: int = 5) -> None:
        super().__init__()
        self.pool = nn.MaxPool2d(k, 1, padding=k // 2)

    def forward(self, x: Tensor) -> Tensor:
        y1 = self.pool(x)
        y2 = self.pool(y1)
        return torch.cat((x, y1, y2, self.pool(y2)), 1)


# Pooling blocks a neck may put on its deepest map, by config name.
POOLS.register("spp")(SPP)
POOLS.register("sppf")(SPPF)


def make_pool(spp: bool | str) -> nn.Module | None:
    """The pooling block for a neck's ``spp`` option: ``true``/``"spp"``, a name registered in
    ``POOLS`` (``"sppf"``), or ``false``/``"none"`` (None). Both blocks give 4x the input channels."""
    if spp is True:
        spp = "spp"
    if spp is False or spp is None or spp == "none":
        return None
    try:
        return POOLS.get(str(spp), where="spp")()
    except ConfigError as e:
        raise ConfigError(f"{e} Also accepted: true, false, none.") from None


def make_se(c: int) -> nn.Module:
    """A squeeze-and-excitation block for ``c`` channels (torchvision's, reduction 16, at least 8)."""
    return SqueezeExcitation(c, make_divisible(c / 16))


def count_parameters(module: nn.Module) -> int:
    """Number of parameters (trainable or not) of ``module``."""
    return sum(p.numel() for p in module.parameters())
