"""Batching and a reproducible DataLoader.

Seeding: the loader's ``torch.Generator`` (seeded with ``seed``) fixes the shuffle order and the
per-worker base seeds; each worker then seeds numpy, ``random`` and the dataset's transform (whose
albumentations pipelines keep their own generators that global seeds do not reach). Under DDP pass
a different ``seed`` per rank (e.g. ``seed + rank``) so ranks do not draw identical augmentations.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler, default_collate, get_worker_info

from facedet.data.transforms import ToTensor, to_unit_float


TARGET_KEYS = ("boxes", "labels", "ignore", "landmarks")


def collate(batch: list[dict[str, Any]]) -> dict[str, Any]:
    """``[{"image", "target", "meta"}] -> {"images": Bx3xSxS, "targets": [...], "metas": [...]}``.

    Inside a loader worker the targets travel packed (one tensor per key plus the per-image counts):
    every tensor leaving a worker costs a shared-memory segment and a file descriptor, and 4 small
    tensors per image cost more than the image. ``FaceLoader`` unpacks them in the main process.
    """
    out = {
        # default_collate stacks straight into shared memory inside a worker (one copy, not two)
        "images": default_collate([item["image"] for item in batch]),
        "targets": [item["target"] for item in batch],
        "metas": [item["meta"] for item in batch],
    }
    if get_worker_info() is not None:
        t = out.pop("targets")
        out["packed_targets"] = {k: torch.cat([x[k] for x in t]) for k in TARGET_KEYS}
        out["packed_targets"]["counts"] = torch.tensor([len(x["boxes"]) for x in t])
    return out


def unpack_targets(batch: dict[str, Any]) -> dict[str, Any]:
    """The inverse of the packing in ``collate`` (views, no copies)."""
    if "packed_targets" not in batch:
        return batch
    batch = dict(batch)
    p = batch.pop("packed_targets")
    counts = p["counts"].tolist()
    parts = {k: p[k].split(counts) for k in TARGET_KEYS}
    batch["targets"] = [{k: parts[k][i] for k in TARGET_KEYS} for i in range(len(counts))]
    return batch


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


def _uint8_transport(dataset: Any) -> None:
    """Make the ToTensor steps of ``dataset`` (a worker's copy) emit uint8 images."""
    for t in getattr(getattr(dataset, "transform", None), "transforms", []):
        if isinstance(t, ToTensor):
            t.uint8 = True
    if hasattr(dataset, "dataset"):
        _uint8_transport(dataset.dataset)
    for d in getattr(dataset, "datasets", []):
        _uint8_transport(d)


def worker_init_fn(worker_id: int) -> None:
    """Per-worker seeds derived from torch's (base seed from the loader's generator + worker id);
    images leave the worker as uint8 (``FaceLoader`` turns them back into floats)."""
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)
    info = get_worker_info()
    if info is not None:
        seed_transforms(info.dataset, seed)
        _uint8_transport(info.dataset)


class FaceLoader(DataLoader):
    """A DataLoader whose batches hold float32 images in [0, 1] and per-image target dicts, however
    the workers sent them (uint8 images, packed targets: see ``collate``).

    Workers send uint8 images: float32 batches (2 MiB per 416 px image) through shared memory
    capped this 2-core machine at ~150 images/s with workers doing nothing else; uint8 at ~600-900.
    The division by 255 here (numpy, ~0.3 ms per image) gives the batches num_workers=0 gives (bar
    mixup blends, which are rounded to uint8 in a worker).
    """

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for batch in super().__iter__():
            batch = unpack_targets(batch)
            images = batch["images"]
            if images.dtype == torch.uint8:
                batch = batch | {"images": torch.from_numpy(to_unit_float(images.numpy()))}
            yield batch


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
    return FaceLoader(
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
