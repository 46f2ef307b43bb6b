"""The model's buffers (BatchNorm running statistics) around an optimizer step: a backup to undo a
skipped (NaN) window, and the cross-rank average that keeps DDP ranks identical."""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn


class BufferKeeper:
    """Holds the list of ``model``'s buffers and a same-shaped backup. ``refresh()`` re-reads the
    list (the trainer calls it every epoch, so a hook that swaps modules is picked up) instead of
    walking the module tree every step."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.refresh()

    def refresh(self) -> None:
        self.buffers = list(self.model.buffers())
        self.backup_copy = [b.detach().clone() for b in self.buffers]

    @torch.no_grad()
    def backup(self) -> None:
        if self.buffers:
            torch._foreach_copy_(self.backup_copy, self.buffers)  # one fused copy, no host sync

    @torch.no_grad()
    def restore(self) -> None:
        """Undo what the forward passes since ``backup()`` did: a NaN batch poisons BatchNorm's
        running statistics even when its optimizer step is skipped."""
        if self.buffers:
            torch._foreach_copy_(self.buffers, self.backup_copy)

    @torch.no_grad()
    def average_across_ranks(self, world_size: int) -> None:
        """Average the floating buffers over ranks (one all-reduce), so every rank evaluates,
        averages into its EMA and checkpoints the same weights. The trainer turns DDP's broadcast of
        rank 0's buffers before each forward off: in training mode BatchNorm normalises with batch
        statistics, so the buffers matter only for those three."""
        floats = [b for b in self.buffers if b.dtype.is_floating_point]
        if floats:
            flat = torch.cat([b.reshape(-1) for b in floats])
            dist.all_reduce(flat)
            flat /= world_size
            parts = flat.split([b.numel() for b in floats])
            torch._foreach_copy_(floats, [v.view_as(b) for b, v in zip(floats, parts, strict=True)])
