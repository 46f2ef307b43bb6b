"""Options from YOLOv4's "bag of specials" that are not plain layers: point-wise SAM, DropBlock with
a ramped drop probability, and BatchNorm with a frozen scale (gamma) for fine-tuning.

Squeeze-and-excitation is ``torchvision.ops.SqueezeExcitation`` (see ``layers.make_se``), the
activations are registered in ``facedet.registry.ACTIVATIONS`` (by ``layers``) and DropBlock's
masking is ``torchvision.ops.drop_block2d``.
"""

from __future__ import annotations

from torch import Tensor, nn
from torchvision.ops import drop_block2d

from facedet.models.layers import ConvBNAct
from facedet.registry import ConfigError


class SAM(nn.Module):
    """YOLOv4's point-wise spatial attention: ``x * sigmoid(BN(conv1x1(x)))``.

    The original SAM pools over channels first; YOLOv4 drops the pooling, so each position and
    channel gets its own weight in (0, 1) (Darknet: a ``logistic`` convolution then ``[sam]``).
    Shape-preserving: ``(B, C, H, W) -> (B, C, H, W)``.
    """

    def __init__(self, c: int) -> None:
        super().__init__()
        self.attn = ConvBNAct(c, c, 1, act="sigmoid")

    def forward(self, x: Tensor) -> Tensor:
        return x * self.attn(x)


class DropBlock(nn.Module):
    """DropBlock (Ghiasi et al., 2018) whose drop probability is ``drop_prob * progress``.

    The paper lowers the keep probability linearly from 1 to its target over training;
    ``facedet.engine.model_hooks.DropBlockHook`` sets ``progress`` from 0 to 1 as the run advances.
    Outside the trainer ``progress`` stays 1 (the full target, like ``torchvision.ops.DropBlock2d``).
    Inactive in eval mode. The block size shrinks to the largest odd size that fits a small map
    (torchvision's ``drop_block2d`` needs an odd size no larger than the map).
    """

    def __init__(self, drop_prob: float, block_size: int = 7) -> None:
        super().__init__()
        if not 0.0 <= drop_prob < 1.0:
            raise ConfigError(f"dropblock must lie in [0, 1) (the final drop probability), got {drop_prob}")
        if block_size < 1 or block_size % 2 == 0:
            raise ConfigError(f"dropblock_size must be a positive odd number, got {block_size}")
        self.drop_prob = float(drop_prob)
        self.block_size = int(block_size)
        self.progress = 1.0

    @property
    def p(self) -> float:
        """The drop probability in use now."""
        return self.drop_prob * min(max(self.progress, 0.0), 1.0)

    def forward(self, x: Tensor) -> Tensor:
        p = self.p
        if not self.training or p == 0.0:
            return x
        size = min(self.block_size, x.shape[-2], x.shape[-1])
        size -= 1 - size % 2  # largest odd size that fits
        return drop_block2d(x, p, size, training=True)

    def extra_repr(self) -> str:
        return f"drop_prob={self.drop_prob}, block_size={self.block_size}, progress={self.progress:.3f}"


def make_dropblocks(n: int, drop_prob: float, block_size: int) -> nn.ModuleList:
    """``n`` DropBlocks (one per tapped level), or identities when ``drop_prob`` is 0 (off)."""
    if drop_prob == 0.0:
        return nn.ModuleList(nn.Identity() for _ in range(n))
    return nn.ModuleList(DropBlock(drop_prob, block_size) for _ in range(n))


def freeze_bn_gamma(module: nn.Module) -> int:
    """Freeze the scale (gamma) of every BatchNorm in ``module``; returns how many were frozen.

    For fine-tuning: a channel whose gamma reaches 0 is dead (it outputs the constant beta, and its
    kernel gets no gradient), and weight decay or a small data set's noisy gradients push small
    gammas there. With gamma fixed every channel keeps the scale it was loaded with (1 from
    scratch), so its kernel stays alive; the optimizer never sees the frozen scales
    (``build_optimizer`` skips parameters without gradients). Beta and the running statistics
    still train.
    """
    n = 0
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.weight is not None:
            m.weight.requires_grad_(False)
            n += 1
    return n


def set_bn_momentum(module: nn.Module, momentum: float) -> int:
    """Set the running-statistics momentum of every BatchNorm in ``module``; returns how many.

    Why it is a setting: evaluation uses the running statistics, which average the last ~1/momentum
    training batches. YOLOv5's 0.03 suits runs of hundreds of epochs, but in a short run the
    weights move faster than a 33-step average follows, and the eval-mode network differs from the
    trained one (seen here: recall 0.03 in eval mode against 0.99 in train mode after 150 AdamW
    steps; 0.99 in both with momentum 0.1).
    """
    if not 0.0 < momentum <= 1.0:
        raise ValueError(f"BatchNorm momentum must lie in (0, 1], got {momentum}")
    n = 0
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.momentum = float(momentum)
            n += 1
    return n
