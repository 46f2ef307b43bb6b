"""Self-adversarial training (SAT, YOLOv4) as a trainer hook.

Stage one (here, in ``preprocess_batch``): with probability ``p`` the network attacks its own input:
the images move one signed-gradient step of size ``epsilon`` up the detection loss,
``x' = clip(x + epsilon * sign(d loss / d x), 0, 1)``, which hides the faces from the current model.
The weights are untouched: the gradient is taken with respect to the images only
(``torch.autograd.grad``), so no parameter receives a gradient, and the BatchNorm running statistics
that the extra forward pass updates are restored. Stage two is the trainer's usual step, on the
perturbed images. A non-finite loss or gradient in stage one (NaN losses are a known hazard of
adversarial augmentation) keeps the clean images for that step and is counted.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch
from torch import nn

from facedet.engine.buffers import BufferKeeper
from facedet.engine.hook_base import PRIORITY_SAT, HookBase
from facedet.registry import HOOKS

log = logging.getLogger(__name__)


def _unwrap(model: nn.Module) -> nn.Module:
    """The module under a (Distributed)DataParallel wrapper: stage one must not trigger DDP's
    gradient synchronisation."""
    if isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
        return model.module
    return model


def adversarial_images(
    model: nn.Module, images: torch.Tensor, targets: list[dict[str, torch.Tensor]], *, epsilon: float,
    amp: bool = False, loss_scale: float = 1.0,
) -> torch.Tensor | None:
    """Stage one: ``clip(images + epsilon * sign(grad), 0, 1)``, or None when the loss or the gradient
    is not finite. Leaves parameters, their ``.grad`` and the BatchNorm buffers as they were."""
    buffers = BufferKeeper(model)  # a copy of the buffers (BatchNorm statistics) the extra forward changes
    x = images.detach().clone().requires_grad_(True)
    try:
        with torch.autocast(images.device.type, enabled=amp):
            # the detection loss alone: the attack hides faces from the student; the teacher would add a
            # forward pass per attack and the distillation term, which stage two applies anyway
            loss = model.loss(x, targets, distill=False)["loss"]
        if not torch.isfinite(loss):
            return None
        # the loss scale keeps fp16 gradients from underflowing to 0 (sign is scale-invariant)
        (grad,) = torch.autograd.grad(loss.float() * loss_scale, x)
    finally:
        buffers.restore()
    if not torch.isfinite(grad).all():
        return None
    return (images.detach() + epsilon * grad.sign()).clamp_(0.0, 1.0)


class SATHook(HookBase):
    """SAT with probability ``p`` per step and step size ``epsilon`` (images in [0, 1]). The coin is
    a function of (seed, step): reproducible and the same on every DDP rank."""

    priority = PRIORITY_SAT
    state_key = "sat"

    def __init__(self, *, p: float = 0.5, epsilon: float = 0.02, seed: int = 0) -> None:
        if not 0 < p <= 1 or not 0 < epsilon <= 1:
            raise ValueError(f"SAT needs 0 < p <= 1 and 0 < epsilon <= 1, got p={p}, epsilon={epsilon}")
        self.p, self.epsilon, self.seed = float(p), float(epsilon), int(seed)
        self.applied = 0
        self.nan_fallbacks = 0
        self._epoch_counts = (0, 0)

    def before_epoch(self) -> None:
        self._epoch_counts = (self.applied, self.nan_fallbacks)

    def preprocess_batch(self, batch: dict[str, Any]) -> dict[str, Any]:
        t = self.trainer
        if np.random.default_rng([self.seed, t.step, 11]).random() >= self.p:
            return batch
        scale = float(t.scaler.get_scale()) if t.scaler.is_enabled() else 1.0
        adv = adversarial_images(_unwrap(t.model), batch["images"], batch["targets"], epsilon=self.epsilon,
                                 amp=t.amp, loss_scale=scale)
        if adv is None:
            self.nan_fallbacks += 1
            log.warning("SAT: non-finite loss or gradient at step %d; this step trains on the clean images "
                        "(%d such steps so far)", t.step, self.nan_fallbacks)
            return batch
        self.applied += 1
        return batch | {"images": adv}

    def after_epoch(self) -> None:
        applied, nans = self.applied - self._epoch_counts[0], self.nan_fallbacks - self._epoch_counts[1]
        log.info("SAT: %d steps on adversarial images this epoch, %d fell back to clean images (NaN)",
                 applied, nans)

    def state_dict(self) -> dict[str, Any]:
        return {"applied": self.applied, "nan_fallbacks": self.nan_fallbacks}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.applied = int(state.get("applied", 0))
        self.nan_fallbacks = int(state.get("nan_fallbacks", 0))


@HOOKS.register("sat")
def sat(*, p: float = 0.0, epsilon: float = 0.02, seed: int) -> SATHook | None:
    """``aug.sat: {p, epsilon}``: self-adversarial training (p = 0: off)."""
    return SATHook(p=float(p), epsilon=float(epsilon), seed=int(seed)) if float(p) > 0 else None

