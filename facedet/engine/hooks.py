"""Optional parts of training as hooks: EMA, periodic evaluation, checkpoints, logging."""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from facedet.checkpoint import EMA_STATE_KEY, save_checkpoint
from facedet.engine import distributed as du
from facedet.engine.ema import ModelEMA
from facedet.engine.eval_hook import EvalHook  # noqa: F401  (lives in eval_hook.py; importable here)
from facedet.engine.hook_base import PRIORITY_CHECKPOINT, PRIORITY_EMA, PRIORITY_LOGGING, HookBase

log = logging.getLogger(__name__)


class EMAHook(HookBase):
    """Keeps an exponential moving average of the weights; evaluation and `best` use it
    (``trainer.eval_model``)."""

    priority = PRIORITY_EMA
    state_key = EMA_STATE_KEY

    def __init__(self, ema: ModelEMA) -> None:
        self.ema = ema

    def before_train(self) -> None:
        self.trainer.eval_model = self.ema.module

    def after_step(self) -> None:
        if self.trainer.stepped:  # not while accumulating, not after a skipped step
            self.ema.update(self.trainer.model)

    def state_dict(self) -> dict[str, Any]:
        return self.ema.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.ema.load_state_dict(state)


class CheckpointHook(HookBase):
    """Writes ``last.pt`` after every epoch (and every ``interval_steps`` optimizer steps when > 0)
    and ``best.pt`` when the evaluation improved, atomically. Each holds the full training state
    plus the resolved config, so it can be evaluated or resumed on its own. After SIGTERM/SIGINT
    (``trainer.interrupted``) it writes ``last.pt`` at the point where training stopped.

    Under DDP every rank builds the state (the RNG states are gathered) and rank 0 writes it.
    The RNG states are captured here, so hooks placed after this one must not draw random numbers
    in ``after_step``/``after_epoch``, or a resumed run would see different ones.
    """

    priority = PRIORITY_CHECKPOINT
    state_key = "checkpoint"

    def __init__(self, ckpt_dir: Path, *, config: dict[str, Any], interval_steps: int = 0) -> None:
        self.dir = Path(ckpt_dir)
        self.config = config
        self.interval_steps = max(0, int(interval_steps))
        self._saved_step = -1

    def _save(self, *, best: bool = False) -> None:
        t = self.trainer
        state = t.state_dict() | {"config": self.config}
        if du.is_main_process():
            save_checkpoint(state, self.dir / "last.pt")
            if best:
                save_checkpoint(state, self.dir / "best.pt")
        self._saved_step = t.step

    def after_step(self) -> None:
        t = self.trainer
        if (self.interval_steps and t.stepped and t.optimizer_steps % self.interval_steps == 0
                and t.iter_in_epoch < t.steps_per_epoch):  # the epoch end saves anyway
            self._save()

    def after_epoch(self) -> None:
        self._save(best=self.trainer.is_best)

    def after_train(self) -> None:
        t = self.trainer
        if t.interrupted and self._saved_step != t.step:
            self._save()
        if t.interrupted:
            du.barrier()  # others wait until rank 0 has written before anyone exits
            log.info("saved %s at epoch %d, step %d after %s", self.dir / "last.pt", t.epoch + 1, t.step,
                     t.interrupted)


class LoggingHook(HookBase):
    """A tqdm bar per epoch, TensorBoard scalars (losses, lr, images/s, metrics) and a log line
    per epoch with the epoch's mean of each loss term (over its finite steps: a skipped NaN step is
    counted apart), not the last batch's, which is noise. Its writer is ``trainer.tb_writer``."""

    priority = PRIORITY_LOGGING
    state_key = "logging"

    def __init__(self, tb_dir: Path | None, *, log_interval: int = 10, progress: bool = True) -> None:
        self.tb_dir = tb_dir
        self.log_interval = max(1, log_interval)
        self.progress = progress
        self.writer = None
        self.bar: tqdm | None = None

    def before_train(self) -> None:
        if self.tb_dir is not None:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(self.tb_dir))
        self.trainer.tb_writer = self.writer  # other hooks (prediction grid, sample grids) add to it

    def before_epoch(self) -> None:
        t = self.trainer
        self.bar = tqdm(total=t.steps_per_epoch, initial=t.iter_in_epoch, desc=f"epoch {t.epoch + 1}/{t.max_epochs}",
                        disable=not self.progress, leave=False, dynamic_ncols=True)
        self.t0 = time.perf_counter()
        self.images = 0
        self.loss_sums: dict[str, float] = {}
        self.loss_counts: dict[str, int] = {}

    def epoch_losses(self) -> dict[str, float]:
        """The mean of each loss term over this epoch's steps so far (NaN for a term never finite)."""
        return {k: v / self.loss_counts[k] if self.loss_counts[k] else math.nan for k, v in self.loss_sums.items()}

    def after_step(self) -> None:
        t = self.trainer
        self.images += (t.train_loader.batch_size or 0) * t.world_size  # all ranks
        for k, v in t.losses.items():
            self.loss_sums.setdefault(k, 0.0)
            self.loss_counts.setdefault(k, 0)
            if math.isfinite(v):
                self.loss_sums[k] += v
                self.loss_counts[k] += 1
        self.bar.update(1)
        if t.step % self.log_interval == 0:
            self.bar.set_postfix({k: f"{v:.3f}" for k, v in t.losses.items()} | {"lr": f"{t.lr:.4g}"})
            if self.writer is not None:
                for k, v in t.losses.items():
                    self.writer.add_scalar(f"train/{k}", v, t.step)
                self.writer.add_scalar("train/lr", t.lr, t.step)
                ips = self.images / max(time.perf_counter() - self.t0, 1e-9)
                self.writer.add_scalar("train/images_per_s", ips, t.step)
                if math.isfinite(t.grad_norm):
                    self.writer.add_scalar("train/grad_norm", t.grad_norm, t.step)
                self.writer.add_scalar("train/skipped_steps", t.skipped_steps, t.step)

    def after_epoch(self) -> None:
        t = self.trainer
        self.bar.close()
        secs = time.perf_counter() - self.t0
        means = self.epoch_losses()
        terms = " ".join(f"{k} {v:.4f}" for k, v in sorted(means.items(), key=lambda kv: kv[0] != "loss")
                         if k.startswith("loss"))  # `loss` first; num_pos and the like are not losses
        line = (f"epoch {t.epoch + 1}/{t.max_epochs} {terms or 'loss nan'} (epoch means) "
                f"lr {t.lr:.4g} {self.images / max(secs, 1e-9):.1f} img/s")
        if t.skipped_steps:
            line += f" ({t.skipped_steps} non-finite steps skipped so far)"
        if t.metrics.get("epoch") == t.epoch + 1:
            line += f" | AP50 {t.metrics['AP50']:.4f} AP {t.metrics['AP']:.4f}" + (" (best)" if t.is_best else "")
            if self.writer is not None:
                for k, v in t.metrics.items():
                    if isinstance(v, (int, float)):
                        self.writer.add_scalar(f"val/{k}", v, t.step)
        if self.writer is not None:
            for k, v in means.items():
                self.writer.add_scalar(f"train_epoch/{k}", v, t.step)
            self.writer.flush()  # a run that dies later keeps its curves
        log.info(line)

    def after_train(self) -> None:
        if self.bar is not None:
            self.bar.close()
        if self.writer is not None:
            self.writer.close()


def count_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
