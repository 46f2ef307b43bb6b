"""Exponential moving average of model weights (the model that is evaluated and kept as `best`)."""

from __future__ import annotations

import copy
import math

import torch
from torch import nn

from facedet.checkpoint import load_model_state


class ModelEMA:
    """EMA of a model's parameters and buffers, as in YOLOv5: ``decay * (1 - exp(-updates / tau))``.

    The ramp keeps early, rapidly changing weights from being averaged with the random
    initialisation; ``tau`` (in optimizer steps) should be a small fraction of a short run.
    """

    def __init__(self, model: nn.Module, *, decay: float = 0.9999, tau: float = 2000.0, updates: int = 0):
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        self.decay_max = decay
        self.tau = tau
        self.updates = updates

    def decay(self) -> float:
        return self.decay_max * (1 - math.exp(-self.updates / self.tau))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        d = self.decay()
        msd = model.state_dict()
        for k, v in self.module.state_dict().items():
            if v.dtype.is_floating_point:
                v.mul_(d).add_(msd[k].detach(), alpha=1 - d)
            else:
                v.copy_(msd[k])

    def state_dict(self) -> dict:
        return {"module": self.module.state_dict(), "updates": self.updates}

    def load_state_dict(self, state: dict) -> None:
        load_model_state(self.module, state["module"], "the checkpoint's EMA weights")
        self.updates = int(state["updates"])
