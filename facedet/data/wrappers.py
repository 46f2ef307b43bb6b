"""Dataset wrappers (oversample, mosaic, copy-paste, mixup): the shared base, and the training set
wrapped per the ``aug`` config.

A wrapper is registered in ``DATASET_WRAPPERS`` and built by ``build`` with the dataset it wraps
(and anything else the framework knows, such as mosaic's size) as keyword arguments. Its
probability ``p`` lives in shared memory (``SharedValue``), so the close-mosaic hook can switch it
off in the main process and the loader's persistent worker processes see it at the next epoch.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from facedet.data.chain import WrapsDataset, innermost_dataset, iter_dataset_chain
from facedet.data.records import Record
from facedet.data.transforms import LETTERBOX_PAD, LetterboxPipeline
from facedet.registry import DATASET_WRAPPERS, ConfigError, accepted_arguments, build

# The order wrappers are applied in: oversample repeats images (so mosaic's other three come from the
# repeated pool too), mosaic builds an image from four, copy-paste adds small faces to that uint8 image
# (before HSV, flip, ...), mixup blends two finished items.
WRAPPER_ORDER = ("oversample", "mosaic", "copy_paste", "mixup")


class SharedValue:
    """A float in shared memory: set in the main process, read by DataLoader workers (fork or spawn)."""

    def __init__(self, value: float) -> None:
        self._t = torch.tensor([float(value)], dtype=torch.float64).share_memory_()

    @property
    def value(self) -> float:
        return float(self._t[0])

    @value.setter
    def value(self, v: float) -> None:
        self._t[0] = float(v)


class DatasetWrapper(WrapsDataset):
    """Base of mosaic, copy-paste and mixup: wraps ``dataset`` (same length, same records), applies itself with
    probability ``p`` (a ``SharedValue``) and draws from its own generator ``rng``, which the
    loader re-seeds per batch through ``set_seed``."""

    def __init__(self, dataset: Dataset, *, p: float) -> None:
        self.dataset = dataset
        self.p = SharedValue(p)
        self.rng = np.random.default_rng(0)

    @property
    def records(self) -> list[Record]:
        """The ground truth of the images (original pixels) that the wrapped chain reads."""
        return innermost_dataset(self).records

    def set_seed(self, seed: int) -> None:
        self.rng = np.random.default_rng(int(seed))

    def __len__(self) -> int:
        return len(self.dataset)


def find_wrappers(dataset: Any) -> list[DatasetWrapper]:
    """The wrappers with a probability ``p`` (mosaic, copy-paste, mixup) in ``dataset``'s chain,
    outermost first: what close-mosaic switches off."""
    return [d for d in iter_dataset_chain(dataset) if isinstance(d, DatasetWrapper)]


def wrap_train_dataset(dataset: Dataset, aug: Mapping[str, Any] | None, *, img_size: int | None = None,
                       pad_value: int = LETTERBOX_PAD) -> Dataset:
    """Wrap the training set per the ``aug`` config, in ``WRAPPER_ORDER``: each of ``aug.oversample``,
    ``aug.mosaic``, ``aug.copy_paste``, ``aug.mixup`` that is switched on (``enabled: true`` for a node
    with that key, else ``p > 0``); returns ``dataset`` itself when none is on.

    ``img_size`` (``data.img_size``) and ``pad_value`` (the letterbox's) are given to the wrappers that
    take ``size`` / ``pad_value`` (mosaic's output size and canvas grey, the size oversampling measures
    faces at, the grey copy-paste avoids). Without ``img_size`` the size of ``dataset``'s letterbox is
    used (the callers that predate the argument; they build the letterbox from ``data.img_size`` too)."""
    aug = aug or {}
    out = dataset
    for key in WRAPPER_ORDER:
        node = dict(aug.get(key) or {})
        if not (bool(node.pop("enabled")) if "enabled" in node else node.get("p", 0) > 0):
            continue
        takes = accepted_arguments(DATASET_WRAPPERS.get(key, where=f"aug.{key}"))[0]
        given: dict[str, Any] = {"dataset": out}
        if "size" in takes:  # a wrapper that draws its own images (mosaic) or measures faces (oversample)
            given["size"] = img_size if img_size is not None else _letterbox_size(dataset)
        if "pad_value" in takes:
            given["pad_value"] = pad_value
        out = build({"type": key, **node}, DATASET_WRAPPERS, where=f"aug.{key}", **given)
    return out


def _letterbox_size(dataset: Dataset) -> int:
    transform = innermost_dataset(dataset).transform
    if not isinstance(transform, LetterboxPipeline):
        raise ConfigError("mosaic needs a dataset whose transform comes from build_transforms (letterbox first)")
    return transform.letterbox.size
