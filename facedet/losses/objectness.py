"""Which cells the objectness loss trains when a miner replaces the ignore threshold (issue 16).

Without a miner (``model.loss.obj_mining: null``, the default) ``YOLOLoss`` trains every cell
except those masked by ``ignore_iou`` and ignored faces, and averages over them. With a miner
(registry ``OBJECTNESS_MINERS``), the ``ignore_iou`` mask is not used: every cell that is not an
ignored face's is a candidate, positives always count, and the miner picks which negatives count.

``ohem`` (online hard-example mining; Shrivastava et al., 2016, as SSD applies it to its
background anchors): per image, only the ``k`` negatives with the largest BCE count, ``k =
ceil(neg_ratio * positives)`` and at least ``min_negatives`` (never more than there are). The
negatives are ranked over all levels of the image together, as SSD ranks all its default boxes:
a face's positives usually sit on one level, and ranking per level would force ``min_negatives``
onto levels that hold no face. Raw BCE is ranked (not BCE times ``balance``), so "hardest" means
the most confidently wrong.

The loss of level ``i`` is ``balance[i] * sum(BCE of the chosen cells) / (number of candidate
cells)``: the denominator is the one the unmasked loss uses, so mining only removes the easy
negatives' terms and leaves the gradient of every positive and every chosen negative exactly as
it is without mining (a mean over the chosen cells would instead multiply the objectness loss by
the ratio of cells to chosen cells, about 100x at 320 px, and silently retune ``obj_weight``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Protocol

import torch
from torch import Tensor

from facedet.assign import LevelAssignment
from facedet.registry import OBJECTNESS_MINERS


class ObjectnessMiner(Protocol):
    """An ``OBJECTNESS_MINERS`` entry: per-level ``(B, A, H, W)`` BCE, candidate and positive masks
    in, per-level masks of the cells whose objectness is trained out (positives included)."""

    def __call__(self, bces: Sequence[Tensor], candidates: Sequence[Tensor],
                 positives: Sequence[Tensor]) -> list[Tensor]: ...


@OBJECTNESS_MINERS.register("ohem")
class OHEMMiner:
    """Positives plus, per image over all levels, the ``k`` highest-BCE negatives (module docstring).

    ``neg_ratio``: negatives per positive cell (> 0); ``min_negatives``: the fewest negatives an image
    trains, also an image without faces (>= 0).
    """

    def __init__(self, *, neg_ratio: float = 3.0, min_negatives: int = 16) -> None:
        if not neg_ratio > 0 or not math.isfinite(neg_ratio):
            raise ValueError(f"neg_ratio must be a finite number > 0, got {neg_ratio}")
        if isinstance(min_negatives, bool) or int(min_negatives) != min_negatives or min_negatives < 0:
            raise ValueError(f"min_negatives must be a whole number >= 0, got {min_negatives!r}")
        self.neg_ratio = float(neg_ratio)
        self.min_negatives = int(min_negatives)

    def __repr__(self) -> str:
        return f"OHEMMiner(neg_ratio={self.neg_ratio}, min_negatives={self.min_negatives})"

    @torch.no_grad()
    def __call__(self, bces: Sequence[Tensor], candidates: Sequence[Tensor],
                 positives: Sequence[Tensor]) -> list[Tensor]:
        bsz = bces[0].shape[0]
        sizes = [b[0].numel() for b in bces]
        score = torch.cat([b.detach().reshape(bsz, -1).float() for b in bces], 1)  # (B, N) over levels
        cand = torch.cat([c.reshape(bsz, -1) for c in candidates], 1)
        pos = torch.cat([p.reshape(bsz, -1) for p in positives], 1)
        neg = cand & ~pos
        # ceil in float64: neg_ratio * count is exact there for any count a batch can hold
        want = torch.ceil(pos.sum(1).double() * self.neg_ratio).clamp(min=self.min_negatives)
        k = torch.minimum(want, neg.sum(1).double()).long()  # (B,) negatives per image
        chosen = pos.clone()
        k_max = int(k.max()) if bsz else 0
        if k_max:
            top = score.masked_fill(~neg, -math.inf).topk(k_max, dim=1).indices  # (B, k_max), hardest first
            keep = torch.arange(k_max, device=k.device)[None, :] < k[:, None]
            rows = torch.arange(bsz, device=k.device)[:, None].expand_as(top)
            chosen[rows[keep], top[keep]] = True
        return [m.reshape(b.shape) for m, b in zip(chosen.split(sizes, 1), bces, strict=True)]


@torch.no_grad()
def assigned_cells(
    shape: torch.Size, asg: LevelAssignment, ignored: Tensor, device: torch.device
) -> tuple[Tensor, Tensor]:
    """``(candidates, positives)``, both ``(B, A, H, W)`` bool, of one level for a miner: positives are
    the cells assigned to a non-ignored face; candidates are all cells except those assigned only to
    ignored faces (neither rewarded nor punished, as without mining). The ``ignore_iou`` mask is not
    applied: choosing the negatives is the miner's job."""
    positives = torch.zeros(shape, dtype=torch.bool, device=device)
    kept = ~ignored
    positives[asg.b[kept], asg.a[kept], asg.gy[kept], asg.gx[kept]] = True
    candidates = torch.ones(shape, dtype=torch.bool, device=device)
    candidates[asg.b[ignored], asg.a[ignored], asg.gy[ignored], asg.gx[ignored]] = False
    return candidates | positives, positives


def mined_objectness(miner: ObjectnessMiner, bces: Sequence[Tensor], candidates: Sequence[Tensor],
                     positives: Sequence[Tensor], balance: Sequence[float]) -> Tensor:
    """``sum_i balance[i] * sum(BCE_i over the chosen cells) / (number of candidate cells of level i)``
    (the module docstring says why that denominator); ``bces`` keep their gradient."""
    chosen = miner(bces, candidates, positives)
    total = bces[0].new_zeros((), dtype=torch.float32)
    for w, bce, cand, sel in zip(balance, bces, candidates, chosen, strict=True):
        total = total + w * (bce * sel.to(bce.dtype)).sum() / cand.sum().clamp(min=1).to(bce.dtype)
    return total
