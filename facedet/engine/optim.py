"""Optimizers (``OPTIMIZERS``) and learning-rate schedules (``SCHEDULES``), built from the ``optim``
and ``schedule`` config nodes by ``facedet.registry.build``."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from facedet.registry import OPTIMIZERS, SCHEDULES, build

# SGD for long schedules (YOLOv4's choice); AdamW converges faster in short from-scratch runs
# (a few thousand steps), which is why ultralytics' "auto" optimizer picks it below 10k iterations.


@OPTIMIZERS.register("sgd")
def sgd(*, params: list[dict[str, Any]], lr: float, momentum: float = 0.937, nesterov: bool = True) -> torch.optim.SGD:
    return torch.optim.SGD(params, lr=lr, momentum=momentum, nesterov=nesterov)


@OPTIMIZERS.register("adamw")
def adamw(*, params: list[dict[str, Any]], lr: float, beta1: float = 0.9, beta2: float = 0.999) -> torch.optim.AdamW:
    return torch.optim.AdamW(params, lr=lr, betas=(beta1, beta2))


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Weight decay on conv/linear weights only: decaying BatchNorm scales and biases only shrinks
    them toward values that hurt (and can kill channels)."""
    decay, no_decay = [], []
    for module in model.modules():
        for pname, p in module.named_parameters(recurse=False):
            if not p.requires_grad:
                continue
            is_norm = isinstance(module, nn.modules.batchnorm._NormBase | nn.GroupNorm | nn.LayerNorm)
            (no_decay if is_norm or pname == "bias" else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def build_optimizer(model: nn.Module, node: Mapping[str, Any] | DictConfig | None = None, *,
                    weight_decay_scale: float = 1.0, **values: Any) -> torch.optim.Optimizer:
    """The optimizer of an ``optim`` node (``type``: sgd, adamw; ``lr``; ``weight_decay``; the
    optimizer's own keys) for ``model``'s parameters, ``values`` overriding the node's keys
    (``build_optimizer(model, lr=0.01)`` is SGD). The weight decay, times ``weight_decay_scale``
    (gradient accumulation's), goes to the conv/linear weights only (``param_groups``)."""
    plain = OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else dict(node or {})
    spec: dict[str, Any] = {"type": "sgd", **plain, **values}
    weight_decay = float(spec.pop("weight_decay", 5e-4)) * weight_decay_scale
    return build(spec, OPTIMIZERS, where="optim", params=param_groups(model, weight_decay))


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


@SCHEDULES.register("cosine")
def warmup_cosine(*, steps_per_epoch: int, epochs: int, warmup_epochs: float = 1.0, warmup_min_steps: int = 100,
                  warmup_start: float = 0.01, final_ratio: float = 0.01) -> WarmupCosine:
    """Linear warmup over ``warmup_epochs`` (at least ``warmup_min_steps`` steps), then cosine decay."""
    warmup = max(int(warmup_epochs * steps_per_epoch), int(warmup_min_steps))
    return WarmupCosine(total_steps=steps_per_epoch * epochs, warmup_steps=warmup, final_ratio=final_ratio,
                        warmup_start=warmup_start)


def build_schedule(node: Mapping[str, Any] | DictConfig, *, steps_per_epoch: int, epochs: int) -> Any:
    """The learning-rate factor per step of a ``schedule`` node (``type: cosine``, ...)."""
    return build(node, SCHEDULES, where="schedule", steps_per_epoch=steps_per_epoch, epochs=epochs)


def set_lr(optimizer: torch.optim.Optimizer, base_lr: float, factor: float) -> float:
    lr = base_lr * factor
    for g in optimizer.param_groups:
        g["lr"] = lr
    return lr


def describe(optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    return {f"group{i}": len(g["params"]) for i, g in enumerate(optimizer.param_groups)}
