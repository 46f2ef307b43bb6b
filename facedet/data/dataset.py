"""Face data sets: records (ground truth in original pixels) + a transform, one registered type per
label format. The framework builds them with ``build(node, DATASETS, transform=..., cache_images=...)``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from torch.utils.data import Dataset

from facedet.data.readers import LoadStats, Record, read_coco_json, read_wider_txt
from facedet.data.synthetic import SPLITS, ensure_synthetic
from facedet.registry import DATASETS

log = logging.getLogger(__name__)

Transform = Callable[[dict[str, Any]], dict[str, Any]]


def load_image(path: str | Path) -> np.ndarray:
    """HxWx3 uint8 RGB. EXIF orientation is ignored, so pixels match the header size readers use
    and the annotators' coordinates. Raises ValueError naming the file when it cannot be decoded."""
    try:
        buf = np.fromfile(str(path), np.uint8)  # imdecode also copes with non-ASCII paths
    except OSError as e:
        raise ValueError(f"cannot read image {path}: {e}") from e
    img = cv2.imdecode(buf, cv2.IMREAD_COLOR_RGB | cv2.IMREAD_IGNORE_ORIENTATION) if buf.size else None
    if img is None:
        raise ValueError(f"cannot decode image {path} (corrupt or not an image)")
    return img


class FaceDataset(Dataset):
    """Items are ``transform(sample)`` (by default the dict of ``facedet.structures`` after
    ``build_transforms``), or the raw Sample when ``transform`` is None.

    ``records`` is the ground truth in original pixels (evaluation reads it); ``stats`` what the
    reader loaded and dropped. ``cache_images`` decodes every image once at construction, before
    loader workers fork, so the workers share those pages instead of each holding a copy.
    """

    def __init__(
        self,
        records: Sequence[Record],
        *,
        transform: Transform | None = None,
        cache_images: bool = False,
        stats: LoadStats | None = None,
    ) -> None:
        self.records = list(records)
        self.transform = transform
        self.stats = stats or LoadStats(source=type(self).__name__, images=len(self.records))
        # lost labels and missing images are warnings: they are a common cause of "AP 0, no idea why"
        lossy = self.stats.missing_images or self.stats.dropped or (self.records and not self.stats.faces)
        (log.warning if lossy else log.info)(self.stats.summary())
        self._cache: list[np.ndarray] | None = None
        if cache_images:
            self._cache = [self._load(i) for i in range(len(self.records))]
            mb = sum(im.nbytes for im in self._cache) / 2**20
            log.info("cached %d decoded images (%.0f MiB)", len(self._cache), mb)

    def __len__(self) -> int:
        return len(self.records)

    def _load(self, index: int) -> np.ndarray:
        rec = self.records[index]
        img = load_image(rec.image_path)
        if img.shape[:2] != tuple(rec.orig_size):
            raise ValueError(
                f"image {rec.image_path} is {img.shape[1]}x{img.shape[0]} (WxH) but its annotation says "
                f"{rec.orig_size[1]}x{rec.orig_size[0]}; boxes would be misplaced"
            )
        return img

    def __getitem__(self, index: int) -> dict[str, Any]:
        rec = self.records[index]
        # copies: transforms may work in place and records must stay the untouched ground truth
        img = self._cache[index].copy() if self._cache is not None else self._load(index)
        sample = {
            "image": img,
            "boxes": rec.boxes.copy(),
            "labels": np.zeros(len(rec.boxes), np.int64),
            "ignore": rec.ignore.copy(),
            "landmarks": rec.landmarks.copy(),
            "image_id": rec.image_id,
            "orig_size": rec.orig_size,
        }
        return self.transform(sample) if self.transform is not None else sample


def _existing(path: str | Path, what: str) -> Path:
    """Resolve against the working directory; a missing path is a user error with a hint."""
    p = Path(path).expanduser().absolute()
    if not p.exists():
        raise ValueError(
            f"{what} not found: {p} (relative paths resolve against the working directory {Path.cwd()}); "
            "point the config at your data, e.g. with the override data.root=/path/to/data"
        )
    return p


@DATASETS.register("wider_txt")
class WiderTxtDataset(FaceDataset):
    """WIDER FACE txt annotations (``wider_face_train_bbx_gt.txt`` layout)."""

    def __init__(
        self, *, ann_file: str, img_dir: str, transform: Transform | None = None, cache_images: bool = False
    ) -> None:
        records, stats = read_wider_txt(
            _existing(ann_file, "annotation file"), _existing(img_dir, "image directory")
        )
        super().__init__(records, transform=transform, cache_images=cache_images, stats=stats)


@DATASETS.register("coco_json")
class CocoJsonDataset(FaceDataset):
    """COCO detection json; every category counts as a face, ``iscrowd`` faces are ignored."""

    def __init__(
        self, *, ann_file: str, img_dir: str, transform: Transform | None = None, cache_images: bool = False
    ) -> None:
        records, stats = read_coco_json(
            _existing(ann_file, "annotation file"), _existing(img_dir, "image directory")
        )
        super().__init__(records, transform=transform, cache_images=cache_images, stats=stats)


@DATASETS.register("synthetic")
class SyntheticDataset(FaceDataset):
    """The generated cartoon-face set (``facedet.data.synthetic``): generated under ``root`` on first
    use (or when the parameters change), then read from its WIDER txt labels."""

    def __init__(
        self,
        *,
        root: str,
        split: str = "train",
        num_train: int = 1200,
        num_val: int = 200,
        seed: int = 0,
        transform: Transform | None = None,
        cache_images: bool = False,
    ) -> None:
        if split not in SPLITS:
            raise ValueError(f"synthetic split must be one of {sorted(SPLITS)}, got {split!r}")
        base = ensure_synthetic(root, num_train=num_train, num_val=num_val, seed=seed)
        records, stats = read_wider_txt(base / split / "labels.txt", base / split / "images")
        super().__init__(records, transform=transform, cache_images=cache_images, stats=stats)
