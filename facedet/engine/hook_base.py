"""The base class of training hooks, their run order (``priority``) and the name their state is
saved under in checkpoints (``state_key``)."""

from __future__ import annotations

from typing import Any, ClassVar

# Run order of the built-in hooks (lower first; equal priorities keep the order they were given in).
# Evaluation must see the EMA; the prediction grid draws what was just evaluated; the data hooks'
# ``preprocess_batch`` run high-res, multi-scale, then SAT, then the sample grid (which so shows the images
# the model is really fed); checkpoint and logging come last, because a checkpoint captures the
# random states at its place in the order (hooks after it must not draw random numbers).
PRIORITY_EMA = 10
PRIORITY_EVAL = 20
PRIORITY_PREDICTION_GRID = 30
PRIORITY_MODEL = 40  # schedules of model options (DropBlock)
PRIORITY_CLOSE_MOSAIC = 50
PRIORITY_HIGH_RES = 55  # downsizes batches to the deployment size before SAT and the grid see them
PRIORITY_MULTI_SCALE = 60
PRIORITY_SAT = 70
PRIORITY_SAMPLE_GRID = 80
PRIORITY_DEFAULT = 100  # hooks that do not say: after the data hooks, before checkpoint and logging
PRIORITY_CHECKPOINT = 900
PRIORITY_LOGGING = 1000


class HookBase:
    """Called by the Trainer at fixed points; ``self.trainer`` is set before ``before_train``.

    ``priority`` orders the hooks (lower runs first, see the ``PRIORITY_*`` values above);
    ``state_key`` names the hook's ``state_dict()`` in a checkpoint's ``hooks`` (empty: the class
    name). The state hooks share lives on the trainer, declared in its docstring.
    """

    priority: ClassVar[int] = PRIORITY_DEFAULT
    state_key: ClassVar[str] = ""
    trainer: Any  # the facedet.engine.trainer.Trainer running this hook (not imported: trainer.py imports this)

    def checkpoint_key(self) -> str:
        """Where this hook's state lives in ``checkpoint["hooks"]``."""
        return self.state_key or type(self).__name__

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


def sort_hooks(hooks: list[HookBase] | tuple[HookBase, ...]) -> list[HookBase]:
    """``hooks`` by ``priority`` (a stable sort: equal priorities keep their given order)."""
    return sorted(hooks, key=lambda h: h.priority)
