"""MobileNetV2 and MobileNetV3 backbones built from torchvision's modules (``weights=None``: nothing
is ever downloaded), tapped at strides 8, 16 and 32 (or 4, 8, 16 and 32: ``out_strides``, for a
stride-4 P2 level).

The torchvision ``features`` module is kept under its own name, so a torchvision ImageNet state
dict saved to a local file loads into ``model.backbone`` (``model.weights=... model.weights_partial=true``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from torch import Tensor, nn
from torchvision.models import mobilenet_v2, mobilenet_v3_large, mobilenet_v3_small

from facedet.models.backbones.darknet import check_out_strides
from facedet.models.specials import make_dropblocks
from facedet.registry import BACKBONES, ConfigError, closest

# MobileNetV3 variants by config name.
_V3_VARIANTS: dict[str, Callable[..., nn.Module]] = {"large": mobilenet_v3_large, "small": mobilenet_v3_small}


def _module_stride(m: nn.Module) -> int:
    """How much ``m`` downsamples: the product of its convolutions' strides (1 for most blocks)."""
    return math.prod(c.stride[0] for c in m.modules() if isinstance(c, nn.Conv2d))


class _TappedFeatures(nn.Module):
    """A torchvision ``features`` Sequential, cut after its last stride-32 block when
    ``last_conv=False``, returning the outputs of the last block at each of ``out_strides``
    (DropBlock on the stride 8, 16 and 32 outputs only)."""

    def __init__(self, features: nn.Sequential, *, last_conv: bool, dropblock: float, dropblock_size: int,
                 out_strides: Sequence[int]) -> None:
        super().__init__()
        strides = check_out_strides(type(self).__name__.lower(), out_strides)
        stride, last_at = 1, {}
        for i, m in enumerate(features):
            stride *= _module_stride(m)
            if stride in strides:
                last_at[stride] = i
        taps = [last_at[s] for s in strides]
        if not last_conv:
            # torchvision ends ``features`` with a 1x1 expansion (1280 / 960 / 576 channels) made for
            # the classifier; without it the stride-32 tap is the last inverted-residual block.
            taps[-1] -= 1
        self.features = features[: taps[-1] + 1]
        self.taps = taps
        self.drop = make_dropblocks(3, dropblock, dropblock_size)
        self._first_drop = len(taps) - 3  # the stride-4 tap (if any) has no DropBlock
        self.out_channels: list[int] = [_out_channels(self.features[i]) for i in taps]
        self.strides: list[int] = strides

    def forward(self, x: Tensor) -> list[Tensor]:
        """``(B, 3, H, W) -> [(B, c3, H/8, W/8), (B, c4, H/16, W/16), (B, c5, H/32, W/32)]``, preceded
        by ``(B, c2, H/4, W/4)`` when ``out_strides`` starts at 4."""
        outs = []
        level = 0
        for i, m in enumerate(self.features):
            x = m(x)
            if i == self.taps[level]:
                if level >= self._first_drop:
                    x = self.drop[level - self._first_drop](x)
                outs.append(x)
                level += 1
        return outs


def _out_channels(m: nn.Module) -> int:
    """Output channels of a torchvision block: those of its last convolution."""
    return [c for c in m.modules() if isinstance(c, nn.Conv2d)][-1].out_channels


def _check_width(name: str, width: float) -> None:
    if width <= 0:
        raise ConfigError(f"{name} width must be positive, got {width}")


@BACKBONES.register("mobilenetv2")
class MobileNetV2(_TappedFeatures):
    """torchvision's MobileNetV2 ``features`` with width multiplier ``width``, tapped at strides 8/16/32.

    Output channels at width 1: ``[32, 96, 1280]`` (``last_conv=True``: the full ``features``,
    about 2.2 M parameters) or ``[32, 96, 320]`` (``last_conv=False``: without the final 1x1
    expansion to 1280 channels, 1.8 M). Input: ``(B, 3, H, W)``, H and W multiples of 32.
    ``dropblock`` and ``dropblock_size`` as for ``cspdarknet``; ``out_strides=[4, 8, 16, 32]`` adds
    the stride-4 map first (24 channels at width 1).
    """

    def __init__(
        self, *, width: float = 1.0, last_conv: bool = True, dropblock: float = 0.0, dropblock_size: int = 7,
        out_strides: Sequence[int] = (8, 16, 32),
    ) -> None:
        _check_width("mobilenetv2", width)
        features = mobilenet_v2(weights=None, width_mult=width).features
        super().__init__(features, last_conv=last_conv, dropblock=dropblock, dropblock_size=dropblock_size,
                         out_strides=out_strides)


@BACKBONES.register("mobilenetv3")
class MobileNetV3(_TappedFeatures):
    """torchvision's MobileNetV3 ``features`` (``variant``: ``large`` or ``small``) with width
    multiplier ``width``, tapped at strides 8/16/32 (hard-swish and SE blocks as in the paper).

    Output channels at width 1: large ``[40, 112, 960]`` / ``[40, 112, 160]`` without the last
    conv; small ``[24, 48, 576]`` / ``[24, 48, 96]``. Input: ``(B, 3, H, W)``. ``out_strides`` as
    for ``mobilenetv2`` (stride 4: 24 / 16 channels at width 1).
    """

    def __init__(
        self,
        *,
        variant: str = "large",
        width: float = 1.0,
        last_conv: bool = True,
        dropblock: float = 0.0,
        dropblock_size: int = 7,
        out_strides: Sequence[int] = (8, 16, 32),
    ) -> None:
        _check_width("mobilenetv3", width)
        factory = _V3_VARIANTS.get(variant)
        if factory is None:
            guess = closest(str(variant), list(_V3_VARIANTS))
            hint = f" Did you mean '{guess}'?" if guess else ""
            raise ConfigError(f"Unknown mobilenetv3 variant '{variant}'. Known: large, small.{hint}")
        features = factory(weights=None, width_mult=width).features
        super().__init__(features, last_conv=last_conv, dropblock=dropblock, dropblock_size=dropblock_size,
                         out_strides=out_strides)
