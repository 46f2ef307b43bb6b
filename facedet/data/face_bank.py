"""The face bank of copy-paste: which faces of the training records may be pasted, and their crops.

A face qualifies when it is not ignored, its size (square root of the box area, the COCO evaluator's
measure) is at least ``min_source_size`` original pixels, so that the downscaled paste is sharp, and
its box touches no other labelled box, so that a crop never carries part of another face that would
be pasted without a label. Crops are read lazily (one image read serves all its qualifying faces),
stored downscaled to at most ``max_side`` pixels of face size and kept in a least-recently-used cache
of ``capacity`` faces per process (each loader worker has its own), so memory stays bounded (about
``(max_side + 2)^2 * 3`` bytes a face: ~7 MiB for 2048 faces at 32 px). A crop is a pure function of
its face, so what happens to be cached never changes the output.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass

import cv2
import numpy as np

from facedet.data.dataset import FaceDataset
from facedet.data.geometry import absent_outside


@dataclass(frozen=True)
class FaceCrop:
    """One face cut out of its image: ``image`` h x w x 3 uint8 (the box's pixels, rounded outwards),
    ``box`` (4,) xyxy and ``landmarks`` (5, 2) in crop pixels, NaN where absent or outside the crop."""

    image: np.ndarray
    box: np.ndarray
    landmarks: np.ndarray


def box_sizes(boxes: np.ndarray) -> np.ndarray:
    """Square root of the box areas (N,)."""
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    return np.sqrt(np.maximum(b[:, 2] - b[:, 0], 0) * np.maximum(b[:, 3] - b[:, 1], 0))


def touches_another(boxes: np.ndarray) -> np.ndarray:
    """(N,) whether each box overlaps (positive intersection area) another box of the same image."""
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    iw = np.minimum(b[:, None, 2], b[None, :, 2]) - np.maximum(b[:, None, 0], b[None, :, 0])
    ih = np.minimum(b[:, None, 3], b[None, :, 3]) - np.maximum(b[:, None, 1], b[None, :, 1])
    overlap = (iw > 0) & (ih > 0)
    np.fill_diagonal(overlap, False)
    return overlap.any(1)


class FaceBank:
    """The faces of ``dataset``'s records that copy-paste may paste (see the module notes). ``faces``
    (K, 2) holds (record index, face index) per bank face; ``image_ids`` the image each comes from."""

    def __init__(self, dataset: FaceDataset, *, min_source_size: float, max_side: float, capacity: int) -> None:
        self.dataset = dataset
        faces = []
        for i, rec in enumerate(dataset.records):
            ok = ~np.asarray(rec.ignore, bool) & (box_sizes(rec.boxes) >= min_source_size) & ~touches_another(rec.boxes)
            faces += [(i, int(j)) for j in np.flatnonzero(ok)]
        self.faces = np.array(faces, np.int64).reshape(-1, 2)
        self.image_ids = [dataset.records[i].image_id for i in self.faces[:, 0]]
        self._of_record: dict[int, list[int]] = {}
        for k, i in enumerate(self.faces[:, 0].tolist()):
            self._of_record.setdefault(i, []).append(k)
        self.max_side = float(max_side)
        self.capacity = int(capacity)
        self._cache: OrderedDict[int, FaceCrop | None] = OrderedDict()

    def __len__(self) -> int:
        return len(self.faces)

    def crop(self, k: int) -> FaceCrop | None:
        """The crop of bank face ``k``; None when its image could not be read (a grey stand-in)."""
        if k in self._cache:
            self._cache.move_to_end(k)
            return self._cache[k]
        i = int(self.faces[k, 0])
        sample = self.dataset.load_sample(i, copy=False)
        for kk in self._of_record[i]:  # one read serves every bank face of the image
            j = int(self.faces[kk, 1])
            self._cache[kk] = self._cut(sample, j) if j < len(sample["boxes"]) else None
        self._cache.move_to_end(k)
        while len(self._cache) > self.capacity:
            self._cache.popitem(last=False)
        return self._cache[k]

    def _cut(self, sample: dict, j: int) -> FaceCrop | None:
        """Face ``j`` of ``sample``: its box's pixels (rounded outwards), downscaled to ``max_side``."""
        img = sample["image"]
        h, w = img.shape[:2]
        box = np.asarray(sample["boxes"][j], np.float64)
        a, c = max(0, math.floor(box[0])), max(0, math.floor(box[1]))
        b, d = min(w, math.ceil(box[2])), min(h, math.ceil(box[3]))
        if b <= a or d <= c:
            return None
        crop = img[c:d, a:b]
        f = min(1.0, self.max_side / max(float(box_sizes(box)[0]), 1e-6))
        if f < 1:
            size = (max(1, round((b - a) * f)), max(1, round((d - c) * f)))
            crop = cv2.resize(crop, size, interpolation=cv2.INTER_AREA)
        else:
            crop = crop.copy()  # never a view of a cached image
        sx, sy = crop.shape[1] / (b - a), crop.shape[0] / (d - c)
        box_c = (box - [a, c, a, c]) * [sx, sy, sx, sy]
        lm = (np.asarray(sample["landmarks"][j], np.float64) - [a, c]) * [sx, sy]
        return FaceCrop(crop, box_c, absent_outside(lm, crop.shape[:2])[0].astype(np.float64))
