"""Hooks that schedule parts of the model during training (model options that need the epoch)."""

from __future__ import annotations

from torch import nn

from facedet.engine.hook_base import PRIORITY_MODEL, HookBase
from facedet.models.specials import DropBlock


class DropBlockHook(HookBase):
    """DropBlock's keep-probability schedule (Ghiasi et al., 2018): the keep probability falls
    linearly from 1 to ``1 - dropblock`` over the whole run, i.e. every ``DropBlock``'s ``progress``
    is the fraction of training done, ``(epoch + step in epoch / steps per epoch) / epochs``.
    A pure function of the trainer's step, so a resumed run continues the same schedule."""

    priority = PRIORITY_MODEL
    state_key = "dropblock"

    def __init__(self, blocks: list[DropBlock]) -> None:
        self.blocks = blocks

    def _update(self) -> None:
        t = self.trainer
        total = max(1, t.steps_per_epoch * t.max_epochs)
        progress = min(1.0, t.step / total)
        for b in self.blocks:
            b.progress = progress

    def before_train(self) -> None:
        self._update()

    def after_step(self) -> None:
        self._update()


def model_hooks(model: nn.Module) -> list[HookBase]:
    """The hooks ``model``'s options need: a ``DropBlockHook`` when it has DropBlock layers."""
    blocks = [m for m in model.modules() if isinstance(m, DropBlock)]
    return [DropBlockHook(blocks)] if blocks else []
