"""The training loop. It only steps the model; everything optional (EMA, evaluation, checkpoints,
logging) is a hook, as in detectron2's trainer, so the loop stays short and each piece is testable.

One iteration (``run_step``) = one batch: forward (autocast on CUDA), backward, and every
``accumulate`` batches an optimizer step: unscale, clip, a NaN/inf check, step. The loss terms and
the gradient norm reach the host in a single transfer per batch (the one the loss logging always
needed). Under DDP the loss goes through ``DistributedDataParallel`` (gradients averaged across
ranks; ``no_sync`` while accumulating) while ``trainer.model`` stays the bare model that hooks,
EMA and checkpoints use.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from facedet.checkpoint import CheckpointError, load_model_state
from facedet.engine import distributed as du
from facedet.engine.buffers import BufferKeeper
from facedet.engine.optim import set_lr
from facedet.engine.rng import capture_rng, restore_rng
from facedet.engine.stop_signals import StopRequest
from facedet.registry import ConfigError

log = logging.getLogger(__name__)

AMP_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}


class TrainingDiverged(RuntimeError):
    """The loss or the gradients stayed non-finite for ``nan_patience`` optimizer steps in a row."""


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


class _LossForward(nn.Module):
    """Routes ``model.loss`` through ``forward`` so DistributedDataParallel sees the pass."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor, targets: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        return self.model.loss(images, targets)


class Trainer:
    """Trains ``model`` (a Detector: ``model.loss(images, targets)`` returns ``{"loss": ...}``).

    State the hooks read: ``epoch`` (0-based, current), ``step`` (training iterations, i.e. batches,
    done over the whole run; the learning rate is a pure function of it), ``iter_in_epoch``
    (batches of this epoch done), ``optimizer_steps``, ``stepped`` (this iteration ended with an
    optimizer update), ``max_epochs``, ``losses`` (last batch's terms as floats), ``grad_norm``,
    ``lr``, ``metrics`` (latest evaluation), ``best_metric``, ``is_best`` (set by the evaluation
    hook for this epoch), ``model``, ``device``, ``amp``, ``train_loader``, ``world_size``, ``rank``,
    ``interrupted`` (the signal name after SIGTERM/SIGINT, else None).

    ``amp``: False, True/"fp16" (float16 + GradScaler) or "bf16"; only on CUDA. ``accumulate``:
    batches per optimizer step. ``nan_patience``: non-finite steps in a row before stopping.
    ``find_unused_parameters``: passed to DDP, for models with trainable parameters that get no
    gradient (slower: DDP then searches the graph every step).
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
        amp: bool | str = False,
        grad_clip: float = 0.0,
        accumulate: int = 1,
        nan_patience: int = 10,
        handle_signals: bool = True,
        find_unused_parameters: bool = False,
    ) -> None:
        self.model = model
        self.optimizer = optimizer
        self.train_loader = train_loader
        self.device = device
        self.max_epochs = max_epochs
        self.base_lr = base_lr
        self.lr_factor = lr_factor
        mode = str(amp).lower()
        mode = {"true": "fp16", "false": "off", "none": "off"}.get(mode, mode)
        if mode not in ("off", *AMP_DTYPES):
            raise ConfigError(f"train.amp must be true, false, fp16 or bf16, got {amp!r}")
        if mode == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
            log.warning("train.amp=bf16 but this GPU has no bfloat16 support: using fp16 with a GradScaler")
            mode = "fp16"
        self.amp = mode != "off" and device.type == "cuda"
        self.amp_dtype = AMP_DTYPES.get(mode, torch.float16)
        # bf16 has fp32's range: no loss scaling needed
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.amp and self.amp_dtype == torch.float16)
        self.grad_clip = grad_clip
        self.accumulate = max(1, int(accumulate))
        self.nan_patience = max(1, int(nan_patience))
        self.handle_signals = handle_signals
        self.world_size = du.get_world_size()
        self.rank = du.get_rank()
        self._ddp = self._wrap_ddp(model, find_unused_parameters) if self.world_size > 1 else None
        self.hooks = list(hooks)
        for h in self.hooks:
            h.trainer = self
        self.epoch = 0
        self.start_epoch = 0
        self.start_iter = 0
        self.iter_in_epoch = 0
        self.step = 0
        self.optimizer_steps = 0
        self.skipped_steps = 0
        self.amp_overflow_steps = 0
        self.stepped = False
        self.lr = 0.0
        self.grad_norm = float("nan")
        self.losses: dict[str, float] = {}
        self.metrics: dict[str, Any] = {}
        self.best_metric = float("-inf")
        self.is_best = False
        self.interrupted: str | None = None
        self.epoch_done = False
        self._bad_in_row = 0
        self._bad_in_group = False
        self._stop = StopRequest()
        self._pending_rng: list[dict[str, Any]] | None = None
        self._buffers = BufferKeeper(model)

    @property
    def steps_per_epoch(self) -> int:
        return len(self.train_loader)

    # ------------------------------------------------------------------ the loop
    def train(self) -> None:
        with self._stop.installed(self.handle_signals):
            self._train()

    def _train(self) -> None:
        self._call("before_train")
        if self.start_iter == 0:
            self._restore_pending_rng()  # the saved run went on with the next epoch's before_epoch
        for epoch in range(self.start_epoch, self.max_epochs):
            self.epoch = epoch
            self.iter_in_epoch = self.start_iter if epoch == self.start_epoch else 0
            self.epoch_done = False
            self.model.train()
            self._call("before_epoch")
            self._buffers.refresh()
            self._restore_pending_rng()  # mid-epoch: the saved run went on with the next batch
            for batch in self._epoch_batches():
                self.run_step(batch)
                self._call("after_step")
                if self.interrupted:
                    break
            if self.interrupted:
                break
            self.epoch_done = True
            self._call("after_epoch")
            if self._agree_to_stop():  # a signal that came during evaluation or saving
                break
        self._call("after_train")

    def _restore_pending_rng(self) -> None:
        """Resumed runs restore the saved random states exactly where the saved run continued."""
        if self._pending_rng is not None:
            restore_rng(self._pending_rng, self.rank, self.device)
            self._pending_rng = None

    def _epoch_batches(self) -> Iterator[dict[str, Any]]:
        """This epoch's batches, from ``iter_in_epoch`` on (mid-epoch resume). ``EpochSampler`` skips
        the indices; another sampler's batches are loaded and dropped (slower, same order)."""
        sampler, skip = self.train_loader.sampler, self.iter_in_epoch
        if hasattr(sampler, "start_batch"):
            sampler.set_epoch(self.epoch, skip)
            return iter(self.train_loader)
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(self.epoch)
        return itertools.islice(self.train_loader, skip, None)

    def run_step(self, batch: dict[str, Any]) -> None:
        self.lr = set_lr(self.optimizer, self.base_lr, self.lr_factor(self.step))
        batch = self._to_device(batch)
        for h in self.hooks:
            batch = h.preprocess_batch(batch)
        boundary = (self.iter_in_epoch + 1) % self.accumulate == 0 or self.iter_in_epoch + 1 >= self.steps_per_epoch
        if self.iter_in_epoch % self.accumulate == 0:  # a window starts: keep the buffers in case it goes bad
            self._buffers.backup()
        sync = self._ddp.no_sync() if (self._ddp is not None and not boundary) else contextlib.nullcontext()
        with sync:
            with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp):
                out = self._ddp(batch["images"], batch["targets"]) if self._ddp else self.model.loss(
                    batch["images"], batch["targets"])
            # DDP averages gradients over ranks; the loss is a per-image sum (YOLOv5), so scale back up
            self.scaler.scale(out["loss"] * self.world_size).backward()
        norm = self._unscale_and_clip() if boundary else None
        self._record(out, norm)  # the one host transfer of this iteration
        self._bad_in_group |= not math.isfinite(self.losses.get("loss", 0.0))
        self.stepped = False
        if boundary:
            self._optimizer_step()
        self.step += 1
        self.iter_in_epoch += 1

    # ------------------------------------------------------------------ step parts
    def _unscale_and_clip(self) -> torch.Tensor:
        self.scaler.unscale_(self.optimizer)
        params = [p for p in self.model.parameters() if p.grad is not None]
        if self.grad_clip > 0:
            return nn.utils.clip_grad_norm_(params, self.grad_clip)
        return nn.utils.get_total_norm([p.grad for p in params])

    def _record(self, out: dict[str, Any], norm: torch.Tensor | None) -> None:
        names = [k for k, v in out.items() if torch.is_tensor(v) and v.numel() == 1]
        values = [out[k].detach().float().reshape(()) for k in names]
        if norm is not None:
            values.append(norm.detach().float().reshape(()))
        host = torch.stack(values).tolist() if values else []
        self.losses = dict(zip(names, host, strict=False))
        self.losses.update({k: float(v) for k, v in out.items() if not torch.is_tensor(v)})
        if norm is not None:
            self.grad_norm = host[-1]

    def _optimizer_step(self) -> None:
        fp16_scaler = self.scaler.is_enabled()
        bad_grad = not math.isfinite(self.grad_norm)
        stop, bad = self._stop.requested is not None, self._bad_in_group or (bad_grad and not fp16_scaler)
        if self.world_size > 1:  # every rank must take the same decisions
            stop, bad = du.any_rank(stop, bad)
        self._bad_in_group = False
        if bad:
            self.optimizer.zero_grad(set_to_none=True)
            self._buffers.restore()  # a NaN forward also poisoned BatchNorm's statistics
            if fp16_scaler:
                self.scaler.update()  # unscale_ recorded the infs: lower the scale, start afresh
            self._skip()
        else:
            self.scaler.step(self.optimizer)  # with fp16 overflow GradScaler skips the step itself
            self.scaler.update()
            self.optimizer.zero_grad(set_to_none=True)
            self._bad_in_row = 0
            if fp16_scaler and bad_grad:
                self.amp_overflow_steps += 1
            else:
                self.stepped = True
                self.optimizer_steps += 1
        if self.world_size > 1:
            self._buffers.average_across_ranks(self.world_size)
        if stop:
            self.interrupted = self._stop.requested or "signal on another rank"

    def _skip(self) -> None:
        self.skipped_steps += 1
        self._bad_in_row += 1
        terms = ", ".join(f"{k} {v:.4g}" for k, v in self.losses.items())
        log.warning("non-finite loss or gradient at epoch %d, step %d (%s; grad norm %s): step skipped "
                    "(%d in a row, %d in total)", self.epoch + 1, self.step, terms, self.grad_norm,
                    self._bad_in_row, self.skipped_steps)
        if self._bad_in_row >= self.nan_patience:
            raise TrainingDiverged(
                f"Training stopped: the loss or the gradients were NaN/inf for {self._bad_in_row} optimizer "
                f"steps in a row (train.nan_patience={self.nan_patience}), up to epoch {self.epoch + 1} step "
                f"{self.step}; {self.skipped_steps} steps skipped in total. Last loss terms: {terms}. "
                "Try a lower optim.lr, a longer warmup, train.grad_clip, train.amp=bf16 or false, and check the "
                "labels (boxes of zero size, coordinates outside the image). checkpoints/last.pt holds the last "
                "finite state at its epoch end."
            )

    def _to_device(self, batch: dict[str, Any]) -> dict[str, Any]:
        images = batch["images"].to(self.device, non_blocking=True)
        targets = [{k: v.to(self.device) for k, v in t.items()} for t in batch["targets"]]
        return batch | {"images": images, "targets": targets}

    def _wrap_ddp(self, model: nn.Module, find_unused_parameters: bool) -> nn.Module:
        from torch.nn.parallel import DistributedDataParallel

        ids = [self.device.index] if self.device.type == "cuda" else None
        # buffers: synced once at construction, then averaged per optimizer step (BufferKeeper)
        return DistributedDataParallel(_LossForward(model), device_ids=ids, output_device=ids[0] if ids else None,
                                       forward_sync_buffers=False, find_unused_parameters=find_unused_parameters)

    # ------------------------------------------------------------------ stopping
    def _agree_to_stop(self) -> bool:
        """Collective under DDP (call it on every rank); free in a single process."""
        stop = self._stop.requested is not None
        if self.world_size > 1:
            stop = du.any_rank(stop)[0]
        if stop:
            self.interrupted = self._stop.requested or "signal on another rank"
        return stop

    # ------------------------------------------------------------------ state
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
            "best_metrics": getattr(self, "best_metrics", None),
            "metrics": self.metrics,
            "rng": du.all_gather_objects(capture_rng(self.device)),
            "hooks": {type(h).__name__: h.state_dict() for h in self.hooks},
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
        hooks = ckpt.get("hooks", {})
        for h in self.hooks:
            name = type(h).__name__
            if name in hooks:
                h.load_state_dict(hooks[name])
            elif h.state_dict():
                log.warning("%s holds no state for %s; it starts afresh", source, name)
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
        self._pending_rng = list(rng) if rng else None

    def _call(self, name: str) -> None:
        for h in self.hooks:
            getattr(h, name)()


