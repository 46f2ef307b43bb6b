"""The training loop. It only steps the model; everything optional (EMA, evaluation, checkpoints,
logging) is a hook, as in detectron2's trainer, so the loop stays short and each piece is testable."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from facedet.engine.optim import set_lr

log = logging.getLogger(__name__)


class HookBase:
    """Called by the Trainer at fixed points; ``self.trainer`` is set before ``before_train``."""

    trainer: Trainer

    def before_train(self) -> None: ...
    def before_epoch(self) -> None: ...

    def preprocess_batch(self, batch: dict[str, Any]) -> dict[str, Any]:
        """Change a training batch (already on the device) before the forward pass: multi-scale
        resizing, SAT's adversarial images. Hooks run in order, each on the previous one's output."""
        return batch

    def after_step(self) -> None: ...
    def after_epoch(self) -> None: ...
    def after_train(self) -> None: ...

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


class Trainer:
    """Trains ``model`` (a Detector: ``model.loss(images, targets)`` returns ``{"loss": ...}``).

    State the hooks read: ``epoch`` (0-based, current), ``step`` (optimizer steps done),
    ``max_epochs``, ``losses`` (last step's terms as floats), ``lr``, ``metrics`` (latest
    evaluation), ``best_metric``, ``is_best`` (set by the evaluation hook for this epoch).
    """

    def __init__(
        self,
        *,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        train_loader: DataLoader,
        device: torch.device,
        max_epochs: int,
        base_lr: float,
        lr_factor: Callable[[int], float],
        hooks: Sequence[HookBase] = (),
        amp: bool = False,
        grad_clip: float = 0.0,
    ) -> None:
        self.model = model
        self.optimizer = optimizer
        self.train_loader = train_loader
        self.device = device
        self.max_epochs = max_epochs
        self.base_lr = base_lr
        self.lr_factor = lr_factor
        self.amp = amp and device.type == "cuda"
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.amp)
        self.grad_clip = grad_clip
        self.hooks = list(hooks)
        for h in self.hooks:
            h.trainer = self
        self.epoch = 0
        self.start_epoch = 0
        self.step = 0
        self.lr = 0.0
        self.losses: dict[str, float] = {}
        self.metrics: dict[str, Any] = {}
        self.best_metric = float("-inf")
        self.is_best = False

    @property
    def steps_per_epoch(self) -> int:
        return len(self.train_loader)

    def train(self) -> None:
        self._call("before_train")
        for epoch in range(self.start_epoch, self.max_epochs):
            self.epoch = epoch
            if hasattr(self.train_loader.sampler, "set_epoch"):
                self.train_loader.sampler.set_epoch(self.epoch)
            self.model.train()
            self._call("before_epoch")
            for batch in self.train_loader:
                self.run_step(batch)
                self._call("after_step")
            self._call("after_epoch")
        self._call("after_train")

    def run_step(self, batch: dict[str, Any]) -> None:
        self.lr = set_lr(self.optimizer, self.base_lr, self.lr_factor(self.step))
        batch = self._to_device(batch)
        for h in self.hooks:
            batch = h.preprocess_batch(batch)
        with torch.autocast(self.device.type, enabled=self.amp):
            out = self.model.loss(batch["images"], batch["targets"])
        self.scaler.scale(out["loss"]).backward()
        if self.grad_clip > 0:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        self.losses = {k: float(v.detach()) for k, v in out.items()}

    def _to_device(self, batch: dict[str, Any]) -> dict[str, Any]:
        images = batch["images"].to(self.device, non_blocking=True)
        targets = [{k: v.to(self.device) for k, v in t.items()} for t in batch["targets"]]
        return batch | {"images": images, "targets": targets}

    def state_dict(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "epoch": self.epoch,
            "step": self.step,
            "best_metric": self.best_metric,
            "hooks": {type(h).__name__: h.state_dict() for h in self.hooks},
        }

    def _call(self, name: str) -> None:
        for h in self.hooks:
            getattr(h, name)()
