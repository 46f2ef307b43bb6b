"""Batching and a reproducible DataLoader.

Seeding: training loaders (``shuffle=True``) use an ``EpochSampler``: the order is a pure function of
``(seed, epoch)`` (torch's DistributedSampler, so ranks get disjoint shards), and every batch carries
its own seed, a pure function of ``(seed, epoch, rank, batch index)``. Before the first sample of a
batch is loaded, that seed is given to the dataset's random transforms (albumentations pipelines
keep their own generators that global seeds do not reach) and, inside a worker, to ``random``,
numpy and torch. So the data of epoch ``e``, batch ``b`` is the same whichever worker loads it, in a
fresh process or a resumed one, and a run can resume exactly mid-epoch (``set_epoch(e, start=b)``).
Loaders without shuffling (evaluation) keep the plain order; under DDP they shard it without
padding (``ShardSampler``), so no image is counted twice.
"""

from __future__ import annotations

import random
import signal
from collections.abc import Iterator
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler, default_collate, get_worker_info

from facedet.data.chain import WrapsDataset, iter_dataset_chain
from facedet.data.transforms import Seeded, to_unit_float
from facedet.data.wrappers import DatasetWrapper

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


@runtime_checkable
class TransformedDataset(Protocol):
    """A dataset whose items go through ``transform`` (``FaceDataset``, or any dataset of that shape)."""

    transform: Any


def seed_transforms(dataset: Any, seed: int) -> None:
    """Seed the random parts of ``dataset``'s chain: the wrappers' generators (mosaic, mixup) and the
    transform of the dataset at the bottom, the one that reads the images."""
    *wrappers, reader = iter_dataset_chain(dataset)
    for w in wrappers:
        if isinstance(w, DatasetWrapper):
            w.set_seed(seed)
    if isinstance(reader, TransformedDataset) and isinstance(reader.transform, Seeded):
        reader.transform.set_seed(seed)


def worker_init_fn(worker_id: int) -> None:
    """Per-worker seeds derived from torch's (base seed from the loader's generator + worker id).
    Images leave the worker as uint8 (``ToTensor.worker_uint8``); ``FaceLoader`` turns them back
    into floats."""
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)
    info = get_worker_info()
    if info is not None:
        seed_transforms(info.dataset, seed)


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


def signal_proof_worker_init_fn(worker_id: int) -> None:
    """``worker_init_fn``, and the worker ignores SIGINT and SIGTERM: Ctrl-C and a scheduler's SIGTERM
    reach every process of the job, and the trainer still needs a batch or two to reach a clean
    stopping point and save ``last``. Such workers must be stopped with ``shutdown_workers`` (or die
    with the main process: torch's watchdog), since multiprocessing's exit-time terminate() is a
    SIGTERM they ignore."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    worker_init_fn(worker_id)


def shutdown_workers(loader: DataLoader) -> None:
    """Stop ``loader``'s persistent worker processes now rather than when it is garbage collected.
    (torch has no public close(); its iterator's own shutdown is what garbage collection calls.)"""
    iterator = getattr(loader, "_iterator", None)
    if iterator is not None and hasattr(iterator, "_shutdown_workers"):
        iterator._shutdown_workers()
    if hasattr(loader, "_iterator"):
        loader._iterator = None


def batch_seed(seed: int, epoch: int, rank: int, batch: int) -> int:
    """The seed of one training batch: a pure function of its coordinates."""
    return int(np.random.SeedSequence([int(seed), int(epoch), int(rank), int(batch)]).generate_state(1)[0])


class EpochSampler(Sampler):
    """Training order for one rank, a pure function of ``(seed, epoch)``, yielding
    ``(index, batch_seed or None)``: the seed rides on the first sample of each batch.

    ``set_epoch(epoch, start_batch)`` selects the epoch and skips its first ``start_batch`` batches
    (mid-epoch resume). ``len()`` stays the full per-rank length so the schedule's steps per epoch
    do not change when a resumed epoch is shorter.
    """

    def __init__(self, dataset: Dataset, *, batch_size: int, seed: int, shuffle: bool = True,
                 rank: int = 0, world_size: int = 1) -> None:
        # torch's sampler does the seeded permutation and the rank sharding (padding with repeats)
        self.base = DistributedSampler(dataset, num_replicas=world_size, rank=rank, shuffle=shuffle,
                                       seed=int(seed), drop_last=False)
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.rank = int(rank)
        self.epoch = 0
        self.start_batch = 0

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        self.epoch = int(epoch)
        self.start_batch = int(start_batch)
        self.base.set_epoch(self.epoch)

    def __len__(self) -> int:
        return len(self.base)

    def __iter__(self) -> Iterator[tuple[int, int | None]]:
        indices = list(self.base)
        bs = self.batch_size
        for pos in range(self.start_batch * bs, len(indices)):
            seed = batch_seed(self.seed, self.epoch, self.rank, pos // bs) if pos % bs == 0 else None
            yield indices[pos], seed


class BatchSeeded(WrapsDataset):
    """Wraps a dataset for ``EpochSampler``: items are requested as ``(index, seed or None)``; a seed
    re-seeds the random transforms (and, in a worker process, ``random``, numpy and torch) before
    the item is loaded. In the main process (``num_workers=0``) the global generators are left to
    the trainer: their state is part of every checkpoint, so they resume exactly anyway.

    Attribute reads and writes other than ``dataset`` go to the wrapped dataset (``records``,
    ``transform``, flags that hooks switch).
    """

    def __init__(self, dataset: Dataset) -> None:
        object.__setattr__(self, "dataset", dataset)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int | None]) -> Any:
        index, seed = key
        if seed is not None:
            seed_transforms(self.dataset, seed)
            if get_worker_info() is not None:
                random.seed(seed)
                np.random.seed(seed)
                torch.manual_seed(seed)
        return self.dataset[index]

    def __getattr__(self, name: str) -> Any:
        return getattr(object.__getattribute__(self, "dataset"), name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self.dataset, name, value)


class ShardSampler(Sampler):
    """Indices ``rank, rank + world_size, ...`` in order, without padding: every image is evaluated
    exactly once across ranks (DistributedSampler would repeat some to even the shards out)."""

    def __init__(self, length: int, *, rank: int, world_size: int) -> None:
        self.indices = range(int(rank), int(length), int(world_size))

    def __len__(self) -> int:
        return len(self.indices)

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)


def build_dataloader(
    dataset: Dataset,
    *,
    batch_size: int,
    shuffle: bool,
    num_workers: int,
    seed: int,
    drop_last: bool = False,
    sampler: Sampler | None = None,
    rank: int = 0,
    world_size: int = 1,
    signal_proof_workers: bool = False,
) -> DataLoader:
    """A DataLoader over ``dataset`` items with ``collate``; reproducible for a given ``seed``.

    ``batch_size`` is per process. ``shuffle=True`` (training) uses ``EpochSampler`` over this
    ``rank``'s shard (see the module notes; the trainer calls ``loader.sampler.set_epoch``), and
    ``loader.dataset`` is then the ``BatchSeeded`` wrapper. Without shuffling and with
    ``world_size > 1`` each rank reads its ``ShardSampler`` share. An explicit ``sampler`` decides
    the order itself. Workers persist across epochs (no re-fork, caches kept); memory is pinned
    when CUDA is available. ``signal_proof_workers``: workers ignore SIGINT/SIGTERM (see
    ``signal_proof_worker_init_fn``; the caller must then call ``shutdown_workers``).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    generator = torch.Generator()
    generator.manual_seed(int(seed))
    if num_workers == 0:
        seed_transforms(dataset, int(seed))  # the main process runs the transforms
    if sampler is None and shuffle:
        sampler = EpochSampler(dataset, batch_size=batch_size, seed=seed, rank=rank, world_size=world_size)
        dataset = BatchSeeded(dataset)
    elif sampler is None and world_size > 1:
        sampler = ShardSampler(len(dataset), rank=rank, world_size=world_size)
    return FaceLoader(
        dataset,
        batch_size=batch_size,
        shuffle=False if sampler is not None else shuffle,
        sampler=sampler,
        num_workers=num_workers,
        collate_fn=collate,
        pin_memory=torch.cuda.is_available(),
        drop_last=drop_last,
        generator=generator,
        worker_init_fn=(signal_proof_worker_init_fn if signal_proof_workers else worker_init_fn)
        if num_workers else None,
        persistent_workers=num_workers > 0,
    )
