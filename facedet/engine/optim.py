"""Optimizer and learning-rate schedule."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from facedet.registry import ConfigError


def _sgd(groups: list[dict[str, Any]], *, lr: float, momentum: float, nesterov: bool) -> torch.optim.Optimizer:
    return torch.optim.SGD(groups, lr=lr, momentum=momentum, nesterov=nesterov)


def _adamw(groups: list[dict[str, Any]], *, lr: float, momentum: float, nesterov: bool) -> torch.optim.Optimizer:
    # momentum is Adam's beta1, as in ultralytics; Nesterov has no meaning here
    return torch.optim.AdamW(groups, lr=lr, betas=(momentum, 0.999))


# SGD for long schedules (YOLOv4's choice); AdamW converges faster in short from-scratch runs
# (a few thousand steps), which is why ultralytics' "auto" optimizer picks it below 10k iterations.
OPTIMIZERS = {"sgd": _sgd, "adamw": _adamw}


def build_optimizer(
    model: nn.Module,
    *,
    lr: float,
    momentum: float = 0.937,
    nesterov: bool = True,
    weight_decay: float = 5e-4,
    name: str = "sgd",
) -> torch.optim.Optimizer:
    """``name`` (sgd, adamw) with weight decay on conv/linear weights only: decaying BatchNorm scales
    and biases only shrinks them toward values that hurt (and can kill channels)."""
    if name not in OPTIMIZERS:
        raise ConfigError(f"Unknown optimizer 'optim.name={name}'. Known optimizers: {', '.join(sorted(OPTIMIZERS))}.")
    decay, no_decay = [], []
    for module in model.modules():
        for pname, p in module.named_parameters(recurse=False):
            if not p.requires_grad:
                continue
            is_norm = isinstance(module, nn.modules.batchnorm._NormBase | nn.GroupNorm | nn.LayerNorm)
            (no_decay if is_norm or pname == "bias" else decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return OPTIMIZERS[name](groups, lr=lr, momentum=momentum, nesterov=nesterov)


class WarmupCosine:
    """Learning-rate factor: linear warmup from ``warmup_start`` over ``warmup_steps``, then cosine
    from 1 down to ``final_ratio`` at ``total_steps``. A plain function of the step, so a resumed
    run recomputes it exactly."""

    def __init__(self, *, total_steps: int, warmup_steps: int, final_ratio: float = 0.01,
                 warmup_start: float = 0.01) -> None:
        self.total_steps = max(1, total_steps)
        self.warmup_steps = max(0, min(warmup_steps, self.total_steps - 1))
        self.final_ratio = final_ratio
        self.warmup_start = warmup_start

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return self.warmup_start + (1 - self.warmup_start) * step / self.warmup_steps
        span = max(1, self.total_steps - self.warmup_steps)
        t = min(1.0, (step - self.warmup_steps) / span)
        return self.final_ratio + (1 - self.final_ratio) * 0.5 * (1 + math.cos(math.pi * t))


def set_lr(optimizer: torch.optim.Optimizer, base_lr: float, factor: float) -> float:
    lr = base_lr * factor
    for g in optimizer.param_groups:
        g["lr"] = lr
    return lr


def describe(optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    return {f"group{i}": len(g["params"]) for i, g in enumerate(optimizer.param_groups)}
