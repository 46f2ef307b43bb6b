"""The Trainer's checkpoint state (a base class of ``Trainer``): what ``state_dict`` writes and
``load_state_dict`` reads back, so a resumed run continues bit-identically (weights, optimizer,
loss scaler, hooks, position in the data, random states)."""

from __future__ import annotations

import logging
from typing import Any

from facedet.checkpoint import CheckpointError, hook_state, load_model_state
from facedet.engine import distributed as du
from facedet.engine.rng import capture_rng

log = logging.getLogger(__name__)


class TrainerState:
    """``state_dict`` / ``load_state_dict`` of the ``Trainer`` (its attributes are declared there)."""

    def state_dict(self) -> dict[str, Any]:
        """Everything a run needs to continue bit-identically. Collective under DDP (the RNG states
        of all ranks are gathered): call it on every rank."""
        return {
            "format": 2,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "epoch": self.epoch,
            "iter_in_epoch": self.iter_in_epoch,
            "epoch_done": self.epoch_done,
            "step": self.step,
            "optimizer_steps": self.optimizer_steps,
            "skipped_steps": self.skipped_steps,
            "steps_per_epoch": self.steps_per_epoch,
            "max_epochs": self.max_epochs,
            "accumulate": self.accumulate,
            "world_size": self.world_size,
            "best_metric": self.best_metric,
            "best_metrics": self.best_metrics,
            "metrics": self.metrics,
            "rng": du.all_gather_objects(capture_rng(self.device)),
            "hooks": {h.checkpoint_key(): h.state_dict() for h in self.hooks},
        }

    def load_state_dict(self, ckpt: dict[str, Any], *, source: str = "checkpoint") -> None:
        """Continue from a ``state_dict()``: weights, optimizer, scaler, hooks, position and RNGs.
        A checkpoint of another model config fails listing the keys that do not fit."""
        load_model_state(self.model, ckpt["model"], f"{source} (model weights)")
        try:
            self.optimizer.load_state_dict(ckpt["optimizer"])
        except (ValueError, KeyError) as e:
            raise CheckpointError(f"{source}: the optimizer state does not fit this model/optimizer: {e}") from e
        if ckpt.get("scaler") and self.scaler.is_enabled():
            self.scaler.load_state_dict(ckpt["scaler"])
        elif self.scaler.is_enabled():
            log.info("%s was saved without fp16 loss scaling; the GradScaler starts afresh", source)
        self._load_hooks(ckpt, source)
        self.epoch = int(ckpt.get("epoch", 0))
        done = bool(ckpt.get("epoch_done", "iter_in_epoch" not in ckpt))  # old checkpoints: epoch ends
        self.start_epoch, self.start_iter = (self.epoch + 1, 0) if done else (self.epoch, int(ckpt["iter_in_epoch"]))
        self.epoch_done = done
        self.step = int(ckpt.get("step", 0))
        self.optimizer_steps = int(ckpt.get("optimizer_steps", self.step))
        self.skipped_steps = int(ckpt.get("skipped_steps", 0))
        self.best_metric = float(ckpt.get("best_metric", float("-inf")))
        if ckpt.get("best_metrics"):
            self.best_metrics = ckpt["best_metrics"]
        self.metrics = dict(ckpt.get("metrics") or {})
        saved_spe = ckpt.get("steps_per_epoch")
        if saved_spe is not None and int(saved_spe) != self.steps_per_epoch:
            log.warning("%s was written with %s steps per epoch, this run has %d (batch size, data or number "
                        "of processes changed): the run continues, but not exactly as it would have",
                        source, saved_spe, self.steps_per_epoch)
        rng = ckpt.get("rng")
        if rng and len(rng) != self.world_size:
            log.warning("%s holds the random states of %d processes, this run has %d: each rank restores "
                        "rank %% %d's", source, len(rng), self.world_size, len(rng))
        self.pending_rng = list(rng) if rng else None

    def _load_hooks(self, ckpt: dict[str, Any], source: str) -> None:
        """Each hook's state by its ``state_key``; checkpoints of older versions keyed it by class name."""
        for h in self.hooks:
            key = h.checkpoint_key()
            state = hook_state(ckpt, key, legacy=type(h).__name__)
            if state is not None:
                h.load_state_dict(state)
            elif h.state_dict():
                log.warning("%s holds no state for the %s hook; it starts afresh", source, key)
