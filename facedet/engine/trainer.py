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

from facedet.engine import distributed as du
from facedet.engine.buffers import BufferKeeper
from facedet.engine.hook_base import HookBase, sort_hooks
from facedet.engine.nan_guard import NonFiniteGuard, TrainingDiverged  # noqa: F401 (importable here, as before)
from facedet.engine.optim import set_lr
from facedet.engine.rng import restore_rng
from facedet.engine.stop_signals import StopRequest
from facedet.engine.trainer_state import TrainerState
from facedet.registry import ConfigError

log = logging.getLogger(__name__)

AMP_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}


class Trainer(TrainerState):
    """Trains ``model`` (a Detector: ``model.loss(images, targets)`` returns ``{"loss": ...}``).

    ``hooks`` run in ``priority`` order (``facedet.engine.hook_base``), whatever order they are given in.

    State the hooks read (all set here, so a hook never has to guess a default): ``epoch`` (0-based,
    current), ``step`` (training iterations, i.e. batches, done over the whole run; the learning
    rate is a pure function of it), ``iter_in_epoch`` (batches of this epoch done),
    ``optimizer_steps``, ``skipped_steps`` (non-finite steps skipped), ``stepped`` (this iteration
    ended with an optimizer update), ``max_epochs``, ``losses`` (last batch's terms as floats),
    ``grad_norm``, ``lr``, ``model``, ``device``, ``amp``, ``scaler``, ``train_loader``,
    ``world_size``, ``rank``, ``interrupted`` (the signal name after SIGTERM/SIGINT, else None).

    State the hooks share, written by one hook and read by others:

    - ``eval_model``: the model that evaluation and the prediction grid use; ``model`` unless the
      EMAHook sets its average in ``before_train``.
    - ``tb_writer``: the TensorBoard ``SummaryWriter``, set by the LoggingHook in ``before_train``;
      None without TensorBoard and on ranks > 0.
    - ``metrics`` (latest evaluation), ``best_metric`` (its value at the best evaluation, -inf
      before one), ``best_metrics`` (the metrics of that evaluation, None before one), ``is_best``
      (this epoch's evaluation was the best so far): written by the EvalHook.

    ``amp``: False, True/"fp16" (float16 + GradScaler) or "bf16"; only on CUDA. ``accumulate``:
    batches per optimizer step. ``nan_patience``: non-finite steps in a row before stopping.
    ``find_unused_parameters``: passed to DDP, for models with trainable parameters that get no
    gradient (slower: DDP then searches the graph every step). ``state_dict``/``load_state_dict``
    (checkpoints, resume) are in ``trainer_state.py``.
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
        self.amp, self.amp_dtype = _amp_mode(amp, device)
        # bf16 has fp32's range: no loss scaling needed
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.amp and self.amp_dtype == torch.float16)
        self.grad_clip = grad_clip
        self.accumulate = max(1, int(accumulate))
        self._nan_guard = NonFiniteGuard(nan_patience)
        self.handle_signals = handle_signals
        self.world_size = du.get_world_size()
        self.rank = du.get_rank()
        self._ddp = du.wrap_ddp(model, device, find_unused_parameters) if self.world_size > 1 else None
        self.hooks = sort_hooks(list(hooks))
        for h in self.hooks:
            h.trainer = self
        self._init_progress()
        self.eval_model: nn.Module = model
        self.tb_writer: Any = None
        self.metrics: dict[str, Any] = {}
        self.best_metric = float("-inf")
        self.best_metrics: dict[str, Any] | None = None
        self.is_best = False
        self._stop = StopRequest()
        self._buffers = BufferKeeper(model)

    def _init_progress(self) -> None:
        """The position in the run and the per-step records (a resume overwrites them)."""
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
        self.interrupted: str | None = None
        self.epoch_done = False
        self._bad_in_group = False
        self.pending_rng: list[dict[str, Any]] | None = None  # random states a resume restores at its place

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
        if self.pending_rng is not None:
            restore_rng(self.pending_rng, self.rank, self.device)
            self.pending_rng = None

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
            self.skipped_steps += 1
            self._nan_guard.skipped(epoch=self.epoch, step=self.step, losses=self.losses, grad_norm=self.grad_norm,
                                    skipped_total=self.skipped_steps)
        else:
            self.scaler.step(self.optimizer)  # with fp16 overflow GradScaler skips the step itself
            self.scaler.update()
            self.optimizer.zero_grad(set_to_none=True)
            self._nan_guard.stepped()
            if fp16_scaler and bad_grad:
                self.amp_overflow_steps += 1
            else:
                self.stepped = True
                self.optimizer_steps += 1
        if self.world_size > 1:
            self._buffers.average_across_ranks(self.world_size)
        if stop:
            self.interrupted = self._stop.requested or "signal on another rank"

    def _to_device(self, batch: dict[str, Any]) -> dict[str, Any]:
        images = batch["images"].to(self.device, non_blocking=True)
        targets = [{k: v.to(self.device) for k, v in t.items()} for t in batch["targets"]]
        return batch | {"images": images, "targets": targets}

    # ------------------------------------------------------------------ stopping
    def request_stop(self, reason: str) -> None:
        """Stop at the next clean point, as SIGTERM does: the next optimizer step, or the end of this
        epoch's ``after_epoch`` hooks (so the checkpoint hook still saves the epoch); then
        ``interrupted`` is ``reason``. For hooks that end a run early (a tuning pruner)."""
        if self._stop.requested is None:
            self._stop.requested = reason

    def _agree_to_stop(self) -> bool:
        """Collective under DDP (call it on every rank); free in a single process."""
        stop = self._stop.requested is not None
        if self.world_size > 1:
            stop = du.any_rank(stop)[0]
        if stop:
            self.interrupted = self._stop.requested or "signal on another rank"
        return stop

    def _call(self, name: str) -> None:
        for h in self.hooks:
            getattr(h, name)()


def _amp_mode(amp: bool | str, device: torch.device) -> tuple[bool, torch.dtype]:
    """(autocast on, its dtype) for ``train.amp`` on ``device``: mixed precision runs on CUDA only."""
    mode = str(amp).lower()
    mode = {"true": "fp16", "false": "off", "none": "off"}.get(mode, mode)
    if mode not in ("off", *AMP_DTYPES):
        raise ConfigError(f"train.amp must be true, false, fp16 or bf16, got {amp!r}")
    if mode == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        log.warning("train.amp=bf16 but this GPU has no bfloat16 support: using fp16 with a GradScaler")
        mode = "fp16"
    return mode != "off" and device.type == "cuda", AMP_DTYPES.get(mode, torch.float16)
