"""Train at a higher resolution, fine-tune at the deployment resolution, in one run (issue 16, option 5).

``aug.high_res: {size: 416, finetune_epochs: 5}``: the training loader renders its images (letterbox
and mosaic) at ``size`` for the whole run (``facedet.builders.train_img_size``), and for the last
``finetune_epochs`` epochs this hook downsizes every batch on the device to ``data.img_size``, the
size that validation, evaluation and deployment use. The switch is a pure function of the epoch, so
it needs no loader change, no state in the checkpoint (a resumed run, or one whose ``train.epochs``
changed, recomputes it), and is the same on every DDP rank.

Why a batch resize and not a size the persistent loader workers read (as close-mosaic's shared
probability): the downsized image differs from one rendered at the small size only by the second
interpolation (tests/test_high_res.py bounds it), the boxes and landmarks scale exactly, and the
loader, mosaic and letterbox stay untouched. The cost is rendering at ``size`` during the
fine-tune epochs too, which the loader workers do in parallel with the step.

Its priority (``PRIORITY_HIGH_RES``, 55) puts it after close-mosaic and before multi-scale (which
``train_img_size`` refuses alongside), SAT and the sample grid: SAT attacks, and the grid shows, the
images the model is fed.
"""

from __future__ import annotations

import logging
from typing import Any

from facedet.data import check_img_size
from facedet.engine.data_hooks import resize_batch
from facedet.engine.hook_base import PRIORITY_HIGH_RES, HookBase
from facedet.registry import HOOKS, ConfigError

log = logging.getLogger(__name__)


class HighResHook(HookBase):
    """Batches arrive at ``size`` (the loader renders them so); from epoch ``max_epochs -
    finetune_epochs`` on they are downsized to ``img_size`` (antialiased), boxes and landmarks
    scaled by ``img_size / size``; faces whose shorter side falls below ``min_face_size`` become
    ignore, as the loader would have made them at ``img_size``."""

    priority = PRIORITY_HIGH_RES
    state_key = "high_res"

    def __init__(self, *, size: int, img_size: int, finetune_epochs: int, min_face_size: float = 0.0) -> None:
        self.size = check_img_size(int(size), where="aug.high_res.size")
        self.img_size = check_img_size(int(img_size), where="data.img_size")
        if self.size < self.img_size:
            raise ConfigError(f"aug.high_res.size={size} is below data.img_size={img_size}")
        if int(finetune_epochs) < 0:
            raise ConfigError(f"aug.high_res.finetune_epochs must be >= 0, got {finetune_epochs}")
        self.finetune_epochs = int(finetune_epochs)
        self.min_face_size = float(min_face_size)
        self.switch_epoch = 0  # 0-based first epoch at img_size; set from train.epochs in before_train

    def fine_tuning(self, epoch: int) -> bool:
        """Whether ``epoch`` (0-based) trains at the deployment size."""
        return epoch >= self.switch_epoch

    def before_train(self) -> None:
        n = int(self.trainer.max_epochs)
        self.switch_epoch = max(0, n - self.finetune_epochs)
        log.info("high-res: %s", self.plan(n))
        if self.switch_epoch == 0:
            log.warning("aug.high_res.finetune_epochs=%d >= train.epochs=%d: every epoch trains at data.img_size=%d, "
                        "from images rendered at %d (slower, no high-res phase)", self.finetune_epochs, n,
                        self.img_size, self.size)
        elif self.finetune_epochs == 0:
            log.warning("aug.high_res.finetune_epochs=0: the whole run trains at %d, but evaluation and deployment "
                        "use data.img_size=%d", self.size, self.img_size)

    def plan(self, max_epochs: int) -> str:
        """The schedule in 1-based epochs, e.g. ``epochs 1-30 at 416, 31-35 at 320``."""
        parts = []
        if self.switch_epoch > 0:
            parts.append(f"epochs 1-{self.switch_epoch} at {self.size}")
        if self.switch_epoch < max_epochs:
            parts.append(f"{self.switch_epoch + 1}-{max_epochs} at {self.img_size}")
        return ", ".join(parts) or "no epochs"

    def before_epoch(self) -> None:
        t = self.trainer
        if t.epoch == self.switch_epoch and self.switch_epoch > 0:
            log.info("high-res: fine-tuning at %d from epoch %d of %d (batches downsized from %d)", self.img_size,
                     t.epoch + 1, t.max_epochs, self.size)

    def preprocess_batch(self, batch: dict[str, Any]) -> dict[str, Any]:
        s = batch["images"].shape[-1]
        if s != self.size:  # another hook resized first, or a loader not built by train_img_size
            raise RuntimeError(f"high-res: expected training batches of {self.size} px, got {s}")
        if not self.fine_tuning(self.trainer.epoch):
            return batch
        return resize_batch(batch, self.img_size, min_face_size=self.min_face_size)


@HOOKS.register("high_res")
def high_res(*, size: int = 0, finetune_epochs: int = 0, img_size: int,
             min_face_size: float | None = 0.0) -> HighResHook | None:
    """``aug.high_res: {size, finetune_epochs}``: train at ``size``, the last ``finetune_epochs``
    epochs at ``data.img_size`` (size 0: off)."""
    if int(size or 0) <= 0:
        return None
    if int(size) == int(img_size):
        log.info("aug.high_res.size=%d equals data.img_size: nothing to fine-tune, the hook is off", size)
        return None
    return HighResHook(size=int(size), img_size=int(img_size), finetune_epochs=int(finetune_epochs),
                       min_face_size=float(min_face_size or 0))
