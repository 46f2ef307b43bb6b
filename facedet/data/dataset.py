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

from facedet.data.formats import (
    read_coco_json,
    read_retinaface_txt,
    read_voc_xml,
    read_wider_txt,
    read_yolo_txt,
)
from facedet.data.records import LoadStats, Record
from facedet.data.synthetic import SPLITS, ensure_synthetic
from facedet.registry import DATASETS

log = logging.getLogger(__name__)

Transform = Callable[[dict[str, Any]], dict[str, Any]]


class ImageError(ValueError):
    """An image that cannot be used; ``reason`` is the LoadStats skip reason."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


def load_image(path: str | Path) -> np.ndarray:
    """HxWx3 uint8 RGB. EXIF orientation is ignored, so pixels match the header size readers use
    and the annotators' coordinates. Raises ImageError (a ValueError) naming the file when it cannot
    be decoded or is a truncated JPEG (which OpenCV would decode with a grey bottom, silently)."""
    try:
        buf = np.fromfile(str(path), np.uint8)  # imdecode also copes with non-ASCII paths
    except OSError as e:
        raise ImageError(f"cannot read image {path}: {e}", "missing_image") from e
    try:
        img = cv2.imdecode(buf, cv2.IMREAD_COLOR_RGB | cv2.IMREAD_IGNORE_ORIENTATION) if buf.size else None
    except cv2.error:  # some decoders raise rather than return None on corrupt data
        img = None
    if img is None:
        raise ImageError(f"cannot decode image {path} (corrupt or not an image)", "undecodable_image")
    # JPEG: entropy-coded data never contains FF D9 (0xFF is byte-stuffed), so a file without the
    # end-of-image marker near its end was cut off
    if buf[:2].tobytes() == b"\xff\xd8" and b"\xff\xd9" not in buf[-65536:].tobytes():
        raise ImageError(f"truncated JPEG {path} (no end-of-image marker)", "truncated_image")
    return img


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
        """The raw Sample of ``index`` (original pixels, before transforms). With ``copy=False`` a
        cached image is returned as is: the caller must not modify it."""
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
            "landmarks": rec.landmarks[:n].copy(),
            "image_id": rec.image_id,
            "orig_size": rec.orig_size,
        }

    def __getitem__(self, index: int) -> dict[str, Any]:
        sample = self.load_sample(index)
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
    """WIDER FACE official txt (``wider_face_train_bbx_gt.txt`` layout; ``invalid`` faces ignored)."""

    def __init__(self, *, ann_file: str, img_dir: str, transform: Transform | None = None,
                 cache_images: bool = False, verify_images: bool = False) -> None:
        records, stats = read_wider_txt(_existing(ann_file, "annotation file"), _existing(img_dir, "image directory"))
        super().__init__(records, transform=transform, cache_images=cache_images, stats=stats,
                         verify_images=verify_images)


@DATASETS.register("retinaface_txt")
class RetinaFaceTxtDataset(FaceDataset):
    """RetinaFace ``label.txt`` (``# image`` lines, boxes with five landmarks)."""

    def __init__(self, *, ann_file: str, img_dir: str, transform: Transform | None = None,
                 cache_images: bool = False, verify_images: bool = False) -> None:
        records, stats = read_retinaface_txt(
            _existing(ann_file, "annotation file"), _existing(img_dir, "image directory")
        )
        super().__init__(records, transform=transform, cache_images=cache_images, stats=stats,
                         verify_images=verify_images)


@DATASETS.register("coco_json")
class CocoJsonDataset(FaceDataset):
    """COCO detection json; every category counts as a face, ``iscrowd`` faces are ignored."""

    def __init__(self, *, ann_file: str, img_dir: str, transform: Transform | None = None,
                 cache_images: bool = False, verify_images: bool = False) -> None:
        records, stats = read_coco_json(_existing(ann_file, "annotation file"), _existing(img_dir, "image directory"))
        super().__init__(records, transform=transform, cache_images=cache_images, stats=stats,
                         verify_images=verify_images)


@DATASETS.register("voc_xml")
class VocXmlDataset(FaceDataset):
    """Pascal VOC xml files under ``ann_dir``; ``classes``: the object names that are faces (null =
    every object); ``difficult`` faces are ignored."""

    def __init__(self, *, ann_dir: str, img_dir: str, classes: list[str] | None = None,
                 transform: Transform | None = None, cache_images: bool = False,
                 verify_images: bool = False) -> None:
        records, stats = read_voc_xml(
            _existing(ann_dir, "annotation folder"), _existing(img_dir, "image directory"), classes=classes
        )
        super().__init__(records, transform=transform, cache_images=cache_images, stats=stats,
                         verify_images=verify_images)


@DATASETS.register("yolo_txt")
class YoloTxtDataset(FaceDataset):
    """YOLO txt labels (normalised ``class cx cy w h`` [+ landmarks]); ``label_dir`` defaults to
    ``img_dir`` with its last ``images`` folder replaced by ``labels``; ``classes``: the class ids
    that are faces (null = all); ``ignore_class``: the class id of ignored faces (null = none)."""

    def __init__(self, *, img_dir: str, label_dir: str | None = None, classes: list[int] | None = None,
                 ignore_class: int | None = None, transform: Transform | None = None,
                 cache_images: bool = False, verify_images: bool = False) -> None:
        img = _existing(img_dir, "image directory")
        labels = _existing(label_dir, "label folder") if label_dir is not None else None
        records, stats = read_yolo_txt(img, labels, classes=classes, ignore_class=ignore_class)
        super().__init__(records, transform=transform, cache_images=cache_images, stats=stats,
                         verify_images=verify_images)


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
