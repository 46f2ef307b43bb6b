"""Non-finite training steps: each one is skipped (the trainer zeroes the gradients and restores
the buffers); ``nan_patience`` of them in a row stop the run with a message that says what to try."""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)


class TrainingDiverged(RuntimeError):
    """The loss or the gradients stayed non-finite for ``nan_patience`` optimizer steps in a row."""


class NonFiniteGuard:
    """Counts skipped optimizer steps in a row; ``skipped`` logs one and raises TrainingDiverged at
    ``patience``, ``stepped`` resets the count."""

    def __init__(self, patience: int) -> None:
        self.patience = max(1, int(patience))
        self.in_row = 0

    def stepped(self) -> None:
        self.in_row = 0

    def skipped(self, *, epoch: int, step: int, losses: dict[str, float], grad_norm: float,
                skipped_total: int) -> None:
        """Record a skipped step (``epoch`` 0-based, ``step`` the trainer's, ``skipped_total`` counting it)."""
        self.in_row += 1
        terms = ", ".join(f"{k} {v:.4g}" for k, v in losses.items())
        log.warning("non-finite loss or gradient at epoch %d, step %d (%s; grad norm %s): step skipped "
                    "(%d in a row, %d in total)", epoch + 1, step, terms, grad_norm, self.in_row, skipped_total)
        if self.in_row >= self.patience:
            raise TrainingDiverged(
                f"Training stopped: the loss or the gradients were NaN/inf for {self.in_row} optimizer "
                f"steps in a row (train.nan_patience={self.patience}), up to epoch {epoch + 1} step "
                f"{step}; {skipped_total} steps skipped in total. Last loss terms: {terms}. "
                "Try a lower optim.lr, a longer warmup, train.grad_clip, train.amp=bf16 or false, and check the "
                "labels (boxes of zero size, coordinates outside the image). checkpoints/last.pt holds the last "
                "finite state at its epoch end."
            )
