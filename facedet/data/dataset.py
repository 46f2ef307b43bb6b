"""The face data set: records (ground truth in original pixels) + a transform. One class for every
label format: a ``READERS`` entry reads the labels, ``FaceDataset`` serves the images.

A data config node names its reader (``{type: wider_txt, ann_file: ..., img_dir: ...}``);
``DATASETS`` holds one entry per reader under the same name (``ReaderDataset``), so the framework
builds any of them with ``build(node, DATASETS, transform=..., cache_images=...)`` and data configs
(including those stored in old checkpoints) keep their keys.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from torch.utils.data import Dataset

from facedet.data.geometry import absent_outside
from facedet.data.readers import Loaded  # importing it registers the READERS that DATASETS mirrors
from facedet.data.records import LoadStats, Record
from facedet.registry import DATASETS, READERS
from facedet_runtime.sources import ImageError, load_image  # the runtime reads images the same way

log = logging.getLogger(__name__)

Transform = Callable[[dict[str, Any]], dict[str, Any]]


class FaceDataset(Dataset):
    """Items are ``transform(sample)`` (by default the dict of ``facedet.structures`` after
    ``build_transforms``), or the raw Sample when ``transform`` is None.

    ``records`` is the ground truth in original pixels (evaluation reads it); ``stats`` what the
    reader loaded and dropped. ``cache_images`` decodes every image once at construction, before
    loader workers fork, so the workers share those pages instead of each holding a copy.
    Decoding at construction (``cache_images`` or ``verify_images``) also skips images that do not
    decode, counted in ``stats``. Otherwise an image that fails when read (cut short, corrupt,
    deleted since) is replaced by a grey image of its size without faces, with a warning naming it,
    once per process, and counted in ``stats`` there: one bad file must not stop a long training
    run. Evaluation then scores that image's faces as missed.
    """

    def __init__(
        self,
        records: Sequence[Record],
        *,
        transform: Transform | None = None,
        cache_images: bool = False,
        stats: LoadStats | None = None,
        verify_images: bool = False,
    ) -> None:
        self.records = list(records)
        self.transform = transform
        self.stats = stats or LoadStats(source=type(self).__name__, images=len(self.records))
        self._cache: list[np.ndarray] | None = None
        self._unreadable: set[int] = set()  # indices that failed when read lazily (this process)
        if cache_images or verify_images:
            self._decode_all(keep=cache_images)
        # lost labels and missing images are warnings: they are a common cause of "AP 0, no idea why"
        lossy = self.stats.lossy or (self.records and not self.stats.faces)
        (log.warning if lossy else log.info)(self.stats.summary())
        if self._cache is not None:
            mb = sum(im.nbytes for im in self._cache) / 2**20
            log.info("cached %d decoded images (%.0f MiB)", len(self._cache), mb)

    def _decode_all(self, *, keep: bool) -> None:
        """Decode every image; drop records whose image fails (counted), keep pixels if ``keep``."""
        good: list[Record] = []
        cache: list[np.ndarray] = []
        for i, rec in enumerate(self.records):
            try:
                img = self._load(i)
            except ImageError as e:
                self._count_skipped(rec, e)
                continue
            good.append(rec)
            if keep:
                cache.append(img)
        self.records = good
        self._cache = cache if keep else None

    def _count_skipped(self, rec: Record, e: ImageError) -> None:
        """Move ``rec`` from loaded to skipped (with its faces) in ``stats``."""
        st = self.stats
        st.skip_image(e.reason, len(rec.boxes), str(e))
        st.images, st.faces, st.ignored = st.images - 1, st.faces - len(rec.boxes), st.ignored - int(rec.ignore.sum())
        st.count_landmarks(rec.landmarks, sign=-1)

    def _load_or_grey(self, index: int) -> tuple[np.ndarray, bool]:
        """The decoded image and True, or for an image that fails now a grey one of the recorded size
        and False (warned about and counted the first time)."""
        if index not in self._unreadable:
            try:
                return self._load(index), True
            except ImageError as e:
                self._unreadable.add(index)
                self._count_skipped(self.records[index], e)
                log.warning("%s: replaced by a grey image without faces; set verify_images: true (or "
                            "cache_images: true) to skip such images before training", e)
        h, w = self.records[index].orig_size
        return np.full((h, w, 3), 128, np.uint8), False

    def __len__(self) -> int:
        return len(self.records)

    def _load(self, index: int) -> np.ndarray:
        rec = self.records[index]
        img = load_image(rec.image_path)
        if img.shape[:2] != tuple(rec.orig_size):
            raise ImageError(
                f"image {rec.image_path} is {img.shape[1]}x{img.shape[0]} (WxH) but its annotation says "
                f"{rec.orig_size[1]}x{rec.orig_size[0]}; boxes would be misplaced", "size_mismatch"
            )
        return img

    def load_sample(self, index: int, *, copy: bool = True) -> dict[str, Any]:
        """The raw Sample of ``index`` (original pixels, before transforms; points outside the image,
        kept in the record as labelled, are absent here). With ``copy=False`` a cached image is
        returned as is: the caller must not modify it."""
        rec = self.records[index]
        n = len(rec.boxes)
        if self._cache is not None:
            img = self._cache[index].copy() if copy else self._cache[index]
        else:
            img, ok = self._load_or_grey(index)
            n = n if ok else 0  # a grey stand-in has no faces
        # copies: transforms may work in place and records must stay the untouched ground truth
        return {
            "image": img,
            "boxes": rec.boxes[:n].copy(),
            "labels": np.zeros(n, np.int64),
            "ignore": rec.ignore[:n].copy(),
            "landmarks": absent_outside(rec.landmarks[:n], rec.orig_size),  # a copy; see make_record
            "image_id": rec.image_id,
            "orig_size": rec.orig_size,
        }

    def __getitem__(self, index: int) -> dict[str, Any]:
        sample = self.load_sample(index)
        return self.transform(sample) if self.transform is not None else sample


# FaceDataset's options a data config node may set beside its reader's keys (the framework sets
# transform and cache_images)
DATASET_OPTIONS = ("transform", "cache_images", "verify_images")


class ReaderDataset:
    """The ``DATASETS`` entry of reader ``name``: called with the reader's config keys and the data set
    options, it reads the labels with ``READERS[name]`` and returns a ``FaceDataset``.

    Its signature is the reader's keys plus ``DATASET_OPTIONS``, so ``build`` checks a config node's
    keys against it and names an unknown or missing key."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.read: Callable[..., Loaded] = READERS.get(name)
        options = inspect.signature(FaceDataset).parameters
        params = [*inspect.signature(self.read).parameters.values(), *(options[k] for k in DATASET_OPTIONS)]
        self.__signature__ = inspect.Signature(params)
        self.__doc__ = self.read.__doc__

    def __call__(self, *, transform: Transform | None = None, cache_images: bool = False,
                 verify_images: bool = False, **reader_keys: Any) -> FaceDataset:
        records, stats = self.read(**reader_keys)
        return FaceDataset(records, transform=transform, cache_images=cache_images, stats=stats,
                           verify_images=verify_images)

    def __repr__(self) -> str:
        return f"ReaderDataset({self.name!r})"


for _name in READERS:
    DATASETS.register(_name)(ReaderDataset(_name))
