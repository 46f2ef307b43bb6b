"""BatchNorm folding before export: each ``Conv2d -> BatchNorm2d`` pair becomes one Conv2d with the
BatchNorm's affine map folded into its weights and bias, in an eval-mode copy of the model.

In eval mode a BatchNorm is ``y = (x - mean) / sqrt(var + eps) * gamma + beta``, a per-channel
affine map, so the convolution before it can absorb it exactly (up to float rounding). The graph
loses one node per convolution and a runtime no longer depends on its own fusion pass finding
them. ``torch.nn.utils.fusion.fuse_conv_bn_eval`` does the arithmetic; this module only finds the
pairs: facedet's ``ConvBNAct`` blocks (conv, bn, act as named attributes) and adjacent
``Conv2d, BatchNorm2d`` children of an ``nn.Sequential`` (torchvision's ``Conv2dNormActivation`` in
the MobileNet backbones).
"""

from __future__ import annotations

import copy
import logging

from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from facedet.models.layers import ConvBNAct

log = logging.getLogger(__name__)


def _fold_sequential(seq: nn.Sequential) -> int:
    """Fold adjacent (Conv2d, BatchNorm2d) children of ``seq`` in place; returns how many."""
    names = list(seq._modules)
    folded = 0
    for a, b in zip(names, names[1:], strict=False):
        conv, bn = seq._modules[a], seq._modules[b]
        if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d) and bn.track_running_stats:
            seq._modules[a] = fuse_conv_bn_eval(conv, bn)
            seq._modules[b] = nn.Identity()
            folded += 1
    return folded


def fold_batchnorm(model: nn.Module) -> tuple[nn.Module, int]:
    """An eval-mode copy of ``model`` with every foldable BatchNorm folded into the convolution
    before it; returns (the copy, how many were folded). ``model`` is left untouched. BatchNorms
    that follow no convolution stay (their count is logged at debug level)."""
    folded_model = copy.deepcopy(model).eval()
    folded = 0
    for module in folded_model.modules():
        if isinstance(module, ConvBNAct) and isinstance(module.bn, nn.BatchNorm2d):
            module.conv = fuse_conv_bn_eval(module.conv, module.bn)
            module.bn = nn.Identity()
            folded += 1
        elif isinstance(module, nn.Sequential):
            folded += _fold_sequential(module)
    left = sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in folded_model.modules())
    log.debug("folded %d BatchNorms into their convolutions; %d left", folded, left)
    return folded_model, folded
