"""Oversampling of the training images that hold many small faces (``aug.oversample``).

An image with ``n`` small faces (not ignored, ``sqrt(w * h) < small_size`` pixels once letterboxed to
``data.img_size``) is served ``clip(n // threshold, 1, max_repeat)`` times per epoch: once per
``threshold`` small faces, at least once, at most ``max_repeat`` times. This is LVIS's repeat factor
(Gupta et al. 2019, ``r = max(1, t / f)``) with "small faces in the image" in place of the category
frequency, rounded down so that the epoch has a fixed length (the schedule counts steps per epoch).

The wrapper sits at the bottom of the wrapper chain, right above the ``FaceDataset``: its length is
the repeated pool, so the sampler (``EpochSampler``: shuffled, DDP shards, per-batch seeds) draws from
that pool and mosaic's three other images come from it too. ``records`` stay the unique images, so
evaluation, the anchor check and the face bank of copy-paste see every image once.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from facedet.data.chain import WrapsDataset, innermost_dataset
from facedet.data.dataset import FaceDataset
from facedet.data.records import Record
from facedet.registry import DATASET_WRAPPERS, ConfigError

log = logging.getLogger(__name__)


def small_face_counts(records: list[Record], *, size: int, small_size: float) -> np.ndarray:
    """Per record, its faces that are not ignored and smaller than ``small_size`` (square root of
    the box area, the COCO evaluator's size measure) once the image is letterboxed to ``size``."""
    counts = np.zeros(len(records), np.int64)
    for i, rec in enumerate(records):
        if not len(rec.boxes):
            continue
        ratio = size / max(rec.orig_size)
        b = np.asarray(rec.boxes, np.float64).reshape(-1, 4)
        side = np.sqrt(np.maximum(b[:, 2] - b[:, 0], 0) * np.maximum(b[:, 3] - b[:, 1], 0)) * ratio
        counts[i] = int(((side < small_size) & ~np.asarray(rec.ignore, bool)).sum())
    return counts


def repeat_counts(small: np.ndarray, *, threshold: int, max_repeat: int) -> np.ndarray:
    """Times each image is served per epoch: ``clip(small // threshold, 1, max_repeat)``."""
    return np.clip(np.asarray(small, np.int64) // int(threshold), 1, int(max_repeat))


@DATASET_WRAPPERS.register("oversample")
class Oversample(WrapsDataset):
    """Serves the images of ``dataset`` (a ``FaceDataset``) repeated per ``repeat_counts``: item ``i``
    is image ``source[i]``. ``size`` is the input size faces are measured at (``data.img_size``,
    given by the framework)."""

    def __init__(self, dataset: FaceDataset, *, size: int, small_size: float = 16.0, threshold: int = 3,
                 max_repeat: int = 3) -> None:
        if isinstance(small_size, bool) or not isinstance(small_size, (int, float)) or not small_size > 0:
            raise ConfigError(f"aug.oversample.small_size must be a number of pixels > 0, got {small_size!r}")
        for key, value in (("threshold", threshold), ("max_repeat", max_repeat)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"aug.oversample.{key} must be an integer >= 1, got {value!r}")
        if not hasattr(dataset, "load_sample"):
            raise ConfigError("aug.oversample must wrap the data set itself (it comes first in WRAPPER_ORDER)")
        self.dataset = dataset
        records = innermost_dataset(dataset).records
        self.small = small_face_counts(records, size=int(size), small_size=float(small_size))
        self.repeats = repeat_counts(self.small, threshold=int(threshold), max_repeat=int(max_repeat))
        self.source = np.repeat(np.arange(len(records)), self.repeats)  # item -> image index
        log.info("oversampling: %d images -> %d per epoch, %d images repeated (faces < %g px at %d px: "
                 "once per %d, at most %d times)", len(records), len(self.source), int((self.repeats > 1).sum()),
                 small_size, size, threshold, max_repeat)

    @property
    def records(self) -> list[Record]:
        """The unique images (each once), as below the wrapper."""
        return innermost_dataset(self).records

    @property
    def transform(self) -> Any:
        """The wrapped data set's transform (mosaic takes its steps after the letterbox)."""
        return self.dataset.transform

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.dataset[int(self.source[index])]

    def load_sample(self, index: int, *, copy: bool = True) -> dict[str, Any]:
        """The raw Sample of item ``index`` (see ``FaceDataset.load_sample``)."""
        return self.dataset.load_sample(int(self.source[index]), copy=copy)
