"""Copy-paste of small faces (``aug.copy_paste``): more small faces per training image.

With probability ``p`` an item gets ``num_faces`` extra faces (a count drawn from that range), each a
face of another training image (``FaceBank``: not ignored, at least ``min_source_size`` pixels, not
touching another face) scaled so that its size (square root of the box area) is drawn from
``paste_size`` output pixels, and pasted at a random place of the S x S image where it keeps
``margin`` pixels away from every labelled face (ignored ones too) and every earlier paste, and not
mostly on the grey of the letterbox / mosaic canvas. The targets gain the face's box and its landmarks
mapped to the paste (absent points stay absent). ``blend`` feathers the paste's border into the image
(as Dwibedi et al. 2017 blend pasted objects, so the border itself is no cue).

It runs on the uint8 image before the post-letterbox steps (HSV, flip, ..., minimum face size, to
tensor), so those still apply to the pasted faces: after mosaic (``Mosaic.raw_item``), else after the
letterbox of the data set below. Like mosaic and mixup, ``p`` lives in shared memory and close-mosaic
switches it off for the last epochs, as ultralytics' close_mosaic sets ``copy_paste = 0``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np
from torch.utils.data import Dataset

from facedet.data.chain import innermost_dataset
from facedet.data.face_bank import FaceBank, FaceCrop
from facedet.data.transforms import LETTERBOX_PAD, LetterboxPipeline
from facedet.data.wrappers import DatasetWrapper
from facedet.registry import DATASET_WRAPPERS, ConfigError

log = logging.getLogger(__name__)

PLACE_TRIES = 20  # random places tried per face before it is skipped (a crowded image)
SOURCE_TRIES = 8  # draws of a bank face from another image before the paste is skipped
MAX_PAD_FRACTION = 0.25  # a place more than a quarter on the canvas grey is refused (a face on flat grey)


def _range(key: str, value: Any, *, integer: bool, lowest: float) -> tuple[float, float]:
    """``[low, high]`` of ``aug.copy_paste.<key>`` with ``lowest <= low <= high``, else a ConfigError."""
    ok = isinstance(value, Sequence) and not isinstance(value, str) and len(value) == 2
    ok = ok and all(isinstance(v, int if integer else (int, float)) and not isinstance(v, bool) for v in value)
    if not ok or not lowest <= value[0] <= value[1]:
        kind = "integers" if integer else "numbers"
        raise ConfigError(f"aug.copy_paste.{key} must be [low, high], {kind} with {lowest:g} <= low <= high, "
                          f"got {value!r}")
    return value[0], value[1]


@DATASET_WRAPPERS.register("copy_paste")
class CopyPaste(DatasetWrapper):
    """Pastes extra small faces into the S x S uint8 image (see the module notes). ``pad_value`` is
    the canvas grey (given by the framework)."""

    def __init__(self, dataset: Dataset, *, pad_value: int = LETTERBOX_PAD, p: float = 0.0,
                 num_faces: Sequence[int] = (1, 4), paste_size: Sequence[float] = (6.0, 16.0),
                 min_source_size: float = 24.0, margin: float = 2.0, blend: float = 0.25,
                 bank_size: int = 2048) -> None:
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 <= p <= 1:
            raise ConfigError(f"aug.copy_paste.p must lie in [0, 1], got {p!r}")
        self.num_faces = tuple(int(v) for v in _range("num_faces", num_faces, integer=True, lowest=1))
        self.paste_size = _range("paste_size", paste_size, integer=False, lowest=1)
        for key, value, low in (("min_source_size", min_source_size, 1), ("margin", margin, 0)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < low:
                raise ConfigError(f"aug.copy_paste.{key} must be a number >= {low}, got {value!r}")
        if isinstance(blend, bool) or not isinstance(blend, (int, float)) or not 0 <= blend <= 0.5:
            raise ConfigError(f"aug.copy_paste.blend must lie in [0, 0.5], got {blend!r}")
        if isinstance(bank_size, bool) or not isinstance(bank_size, int) or bank_size < 1:
            raise ConfigError(f"aug.copy_paste.bank_size must be an integer >= 1, got {bank_size!r}")
        reader = innermost_dataset(dataset)
        if not isinstance(getattr(reader, "transform", None), LetterboxPipeline):
            raise ConfigError("aug.copy_paste needs a dataset whose transform comes from build_transforms "
                              "(letterbox first)")
        super().__init__(dataset, p=p)
        self.pad_value, self.margin, self.blend = int(pad_value), float(margin), float(blend)
        # below: mosaic's raw S x S item and its post steps, or the letterbox and the steps after it
        self._below_mosaic = hasattr(dataset, "raw_item") and hasattr(dataset, "post")
        self.post = dataset.post if self._below_mosaic else reader.transform.after_letterbox
        self._letterbox = reader.transform.letterbox
        # crops stored at up to twice the largest paste: every paste is a downscale of at least 2x
        self.bank = FaceBank(reader, min_source_size=float(min_source_size), max_side=2 * self.paste_size[1],
                             capacity=bank_size)
        if not len(self.bank):
            raise ConfigError(f"aug.copy_paste: no face of the training set qualifies for pasting (not ignored, "
                              f"aug.copy_paste.min_source_size={min_source_size} px or more, touching no other "
                              "face); lower min_source_size")
        if min_source_size < self.paste_size[1]:
            log.warning("aug.copy_paste.min_source_size=%g < paste_size %g: some pastes are enlarged (blurred)",
                        min_source_size, self.paste_size[1])
        log.info("copy-paste: %d faces of %d images in the bank, p=%g, %d-%d faces of %g-%g px per image",
                 len(self.bank), len(set(self.bank.image_ids)), p, *self.num_faces, *self.paste_size)

    def set_seed(self, seed: int) -> None:
        # a stream of its own: mosaic and mixup get default_rng(seed) from the same seed
        self.rng = np.random.default_rng([int(seed), 0xC0FFEE])

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.post(self.raw_item(index))

    def raw_item(self, index: int) -> dict[str, Any]:
        """The S x S Sample with the pasted faces, before the post steps (HSV, flip, ..., to tensor)."""
        if self._below_mosaic:
            item = self.dataset.raw_item(index)
        else:
            item = self._letterbox(self.dataset.load_sample(index))
        if self.rng.random() >= self.p.value:
            return item
        return self.paste(item)

    def paste(self, item: dict[str, Any]) -> dict[str, Any]:
        """``item`` with ``num_faces`` faces pasted (fewer when no free place is found)."""
        img = item["image"].copy()
        occupied = [np.asarray(item["boxes"], np.float64).reshape(-1, 4)]
        boxes, points = [], []
        for _ in range(int(self.rng.integers(self.num_faces[0], self.num_faces[1] + 1))):
            crop = self._draw_crop(item["image_id"])
            if crop is None:
                continue
            size = self.rng.uniform(*self.paste_size)
            bw, bh = crop.box[2] - crop.box[0], crop.box[3] - crop.box[1]
            g = size / math.sqrt(max(bw * bh, 1e-6))
            ch, cw = crop.image.shape[:2]
            pw, ph = max(1, round(cw * g)), max(1, round(ch * g))
            place = self._find_place(img, np.concatenate(occupied), pw, ph)
            if place is None:
                continue
            u, v = place
            self._blit(img, crop.image, u, v, pw, ph)
            sx, sy = pw / cw, ph / ch
            boxes.append(crop.box * [sx, sy, sx, sy] + [u, v, u, v])
            points.append(crop.landmarks * [sx, sy] + [u, v])
            occupied.append(np.array([[u, v, u + pw, v + ph]], np.float64))
        if not boxes:
            return item | {"image": img}
        n = len(boxes)
        return item | {
            "image": img,
            "boxes": np.concatenate([np.asarray(item["boxes"], np.float32).reshape(-1, 4),
                                     np.array(boxes, np.float32)]),
            "labels": np.concatenate([np.asarray(item["labels"], np.int64).reshape(-1), np.zeros(n, np.int64)]),
            "ignore": np.concatenate([np.asarray(item["ignore"], bool).reshape(-1), np.zeros(n, bool)]),
            "landmarks": np.concatenate([np.asarray(item["landmarks"], np.float32).reshape(-1, 5, 2),
                                         np.array(points, np.float32)]),
        }

    def _draw_crop(self, image_id: str) -> FaceCrop | None:
        """A bank face from an image other than ``image_id`` (a face is never pasted into its own photo)."""
        for _ in range(SOURCE_TRIES):
            k = int(self.rng.integers(len(self.bank)))
            if self.bank.image_ids[k] != image_id:
                return self.bank.crop(k)
        return None

    def _find_place(self, img: np.ndarray, occupied: np.ndarray, pw: int, ph: int) -> tuple[int, int] | None:
        """Top-left (u, v) of a ``pw`` x ``ph`` place ``margin`` away from every ``occupied`` box and
        mostly off the canvas grey; None after ``PLACE_TRIES`` refused draws."""
        h, w = img.shape[:2]
        if pw > w or ph > h:
            return None
        m = self.margin
        for _ in range(PLACE_TRIES):
            u, v = int(self.rng.integers(0, w - pw + 1)), int(self.rng.integers(0, h - ph + 1))
            o = occupied
            if ((u - m < o[:, 2]) & (u + pw + m > o[:, 0]) & (v - m < o[:, 3]) & (v + ph + m > o[:, 1])).any():
                continue
            if (img[v:v + ph, u:u + pw] == self.pad_value).all(2).mean() > MAX_PAD_FRACTION:
                continue
            return u, v
        return None

    def _blit(self, img: np.ndarray, crop: np.ndarray, u: int, v: int, pw: int, ph: int) -> None:
        """Resize ``crop`` to ``pw`` x ``ph`` and write it at (u, v), its border feathered by ``blend``."""
        shrink = pw < crop.shape[1] or ph < crop.shape[0]
        patch = cv2.resize(crop, (pw, ph), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
        feather = self.blend * min(pw, ph)
        if feather <= 0:
            img[v:v + ph, u:u + pw] = patch
            return
        # weight of the paste: 1 inside, falling linearly to 0 at the border over `feather` pixels
        dx = np.minimum(np.arange(pw) + 0.5, pw - np.arange(pw) - 0.5)
        dy = np.minimum(np.arange(ph) + 0.5, ph - np.arange(ph) - 0.5)
        alpha = np.clip(np.minimum(dy[:, None], dx[None, :]) / feather, 0, 1)[..., None]
        region = img[v:v + ph, u:u + pw].astype(np.float32)
        img[v:v + ph, u:u + pw] = np.round(alpha * patch + (1 - alpha) * region).astype(np.uint8)
