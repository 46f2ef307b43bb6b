"""Batching and a reproducible DataLoader.

Seeding: the loader's ``torch.Generator`` (seeded with ``seed``) fixes the shuffle order and the
per-worker base seeds; each worker then seeds numpy, ``random`` and the dataset's transform (whose
albumentations pipelines keep their own generators that global seeds do not reach). Under DDP pass
a different ``seed`` per rank (e.g. ``seed + rank``) so ranks do not draw identical augmentations.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler, default_collate, get_worker_info


def collate(batch: list[dict[str, Any]]) -> dict[str, Any]:
    """``[{"image", "target", "meta"}] -> {"images": Bx3xSxS, "targets": [...], "metas": [...]}``."""
    return {
        # default_collate stacks straight into shared memory inside a worker (one copy, not two)
        "images": default_collate([item["image"] for item in batch]),
        "targets": [item["target"] for item in batch],
        "metas": [item["meta"] for item in batch],
    }


def seed_transforms(dataset: Any, seed: int) -> None:
    """Seed the random transforms of ``dataset`` (looking through Subset/ConcatDataset wrappers)."""
    if hasattr(dataset, "set_seed"):  # wrappers with their own randomness (mosaic, mixup)
        dataset.set_seed(seed)
    transform = getattr(dataset, "transform", None)
    if transform is not None and hasattr(transform, "set_seed"):
        transform.set_seed(seed)
    if hasattr(dataset, "dataset"):
        seed_transforms(dataset.dataset, seed)
    for i, d in enumerate(getattr(dataset, "datasets", [])):
        seed_transforms(d, seed + 7919 * (i + 1))


def worker_init_fn(worker_id: int) -> None:
    """Per-worker seeds derived from torch's (base seed from the loader's generator + worker id)."""
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)
    info = get_worker_info()
    if info is not None:
        seed_transforms(info.dataset, seed)


def build_dataloader(
    dataset: Dataset,
    *,
    batch_size: int,
    shuffle: bool,
    num_workers: int,
    seed: int,
    drop_last: bool = False,
    sampler: Sampler | None = None,
) -> DataLoader:
    """A DataLoader over ``dataset`` items with ``collate``; reproducible for a given ``seed``.

    With a ``sampler`` (e.g. DistributedSampler) the sampler decides the order and ``shuffle`` is
    not passed on. Workers persist across epochs (no re-fork, caches kept); memory is pinned when
    CUDA is available.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    generator = torch.Generator()
    generator.manual_seed(int(seed))
    if num_workers == 0:
        seed_transforms(dataset, int(seed))  # the main process runs the transforms
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle if sampler is None else False,
        sampler=sampler,
        num_workers=num_workers,
        collate_fn=collate,
        pin_memory=torch.cuda.is_available(),
        drop_last=drop_last,
        generator=generator,
        worker_init_fn=worker_init_fn if num_workers > 0 else None,
        persistent_workers=num_workers > 0,
    )
