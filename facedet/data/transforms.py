"""Transforms on Sample dicts (see ``facedet.structures``), registered in ``TRANSFORMS``.

``build_transforms`` always starts with a ``Letterbox`` to the training size and ends with
``ToTensor``; the configured augmentations run in between, on the letterboxed image. Bbox-aware
augmentations go through albumentations with the row index as a label field, so ``labels``,
``ignore`` and ``landmarks`` stay aligned with ``boxes`` and a lost box is an error, not a silent drop.

Randomness: albumentations keeps its own generator (global seeds do not reach it), so every random
transform has ``set_seed`` (the ``Seeded`` protocol); the data loader calls it per batch (see ``loader.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import albumentations as A
import cv2
import numpy as np
import torch
from torch.utils.data import get_worker_info

from facedet.registry import TRANSFORMS, ConfigError, build

# the one letterbox, shared with the torch-free runtime so an exported model sees the training pixels
from facedet_runtime.letterbox import (
    LETTERBOX_PAD,
    letterbox_image,
    letterbox_shape,  # noqa: F401  (facedet.data exports it)
)

# 5-point landmark order (left eye, right eye, nose, left mouth corner, right mouth corner):
# a horizontal flip swaps left and right.
FLIP_ORDER = np.array([1, 0, 2, 4, 3])

STRIDE_MULTIPLE = 32  # input sizes must be a multiple of the detectors' largest stride


def check_img_size(size: int, *, where: str = "img_size") -> int:
    """``size`` if it is a positive multiple of 32 (the largest stride), else a ConfigError naming
    ``where``: the one check for every input size (data.img_size, prediction, export)."""
    if size <= 0 or size % STRIDE_MULTIPLE:
        raise ConfigError(f"{where} must be a multiple of {STRIDE_MULTIPLE} (the largest stride), got {size}.")
    return int(size)


@runtime_checkable
class Seeded(Protocol):
    """A random transform (or pipeline) whose generators ``set_seed`` re-seeds."""

    def set_seed(self, seed: int) -> None: ...


@TRANSFORMS.register("letterbox")
class Letterbox:
    """Resize keeping the aspect ratio so the long side is ``size`` (INTER_AREA when shrinking: it
    averages, which helps dark and noisy images; INTER_LINEAR when enlarging), pad centred to
    size x size with ``pad_value``, move boxes and landmarks, and set ``meta``.

    Written with cv2 rather than albumentations because the inverse mapping
    (``facedet.structures.boxes_to_original``) needs the exact ratio and padding used here.
    """

    def __init__(self, *, size: int, pad_value: int = LETTERBOX_PAD) -> None:
        if size <= 0:
            raise ValueError(f"letterbox size must be positive, got {size}")
        self.size, self.pad_value = int(size), int(pad_value)

    def __call__(self, sample: dict[str, Any]) -> dict[str, Any]:
        h, w = sample["image"].shape[:2]
        img, r, (left, top) = letterbox_image(sample["image"], self.size, self.pad_value)
        shift = np.array([left, top], np.float32)
        out = dict(sample)
        out["image"] = img
        out["boxes"] = (sample["boxes"] * np.float32(r) + np.tile(shift, 2)).astype(np.float32)
        out["landmarks"] = (sample["landmarks"] * np.float32(r) + shift).astype(np.float32)
        # orig_size of the image actually resized: that is what the ratio and padding map back to
        out["meta"] = {
            "image_id": sample["image_id"],
            "orig_size": (int(h), int(w)),
            "ratio": float(r),
            "pad": (float(left), float(top)),
        }
        return out


class _Albumentations:
    """Runs albumentations transforms on a Sample, carrying the box row index as the label field."""

    def __init__(self, transforms: list[Any], *, geometric: bool) -> None:
        self.geometric = geometric  # image-only transforms leave boxes untouched
        bbox = A.BboxParams(format="pascal_voc", label_fields=["idx"], clip=True) if geometric else None
        self.pipeline = A.Compose(transforms, bbox_params=bbox, save_applied_params=geometric)

    def set_seed(self, seed: int) -> None:
        self.pipeline.set_random_seed(int(seed))

    def __call__(self, sample: dict[str, Any]) -> dict[str, Any]:
        return self._run(sample)[0]

    def _run(self, sample: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
        """(transformed sample, names of the albumentations transforms that were applied)."""
        out = dict(sample)
        if not self.geometric:
            out["image"] = self.pipeline(image=sample["image"])["image"]
            return out, []
        n = len(sample["boxes"])
        res = self.pipeline(image=sample["image"], bboxes=sample["boxes"], idx=np.arange(n))
        idx = np.asarray(res["idx"], np.int64).reshape(-1)
        if len(idx) != n:  # a flip or colour change must keep every face
            raise RuntimeError(
                f"{type(self).__name__} lost {n - len(idx)} of {n} boxes on {sample['image_id']}"
            )
        out["image"] = res["image"]
        out["boxes"] = np.asarray(res["bboxes"], np.float32).reshape(-1, 4)
        for key in ("labels", "ignore", "landmarks"):
            out[key] = sample[key][idx]
        return out, [name for name, _ in res.get("applied_transforms", [])]


class _RandomStep:
    """A random step with its own numpy generator, seeded per loader worker through ``set_seed``."""

    def __init__(self, p: float) -> None:
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"p must lie in [0, 1], got {p}")
        self.p = float(p)
        self.rng = np.random.default_rng(0)

    def set_seed(self, seed: int) -> None:
        self.rng = np.random.default_rng(int(seed))


@TRANSFORMS.register("hflip")
class HFlip(_RandomStep):
    """Mirror left-right with probability ``p``; landmarks are mirrored and their left/right
    points swapped. ``meta`` is left as is: un-flip predictions (x -> S - x) before mapping back.

    Not albumentations' HorizontalFlip: its box bookkeeping (normalise, filter, check) costs ~1 ms
    per 416 px image, 20x the flip itself, and the training loader has ~6 ms per image in all."""

    def __init__(self, *, p: float = 0.5) -> None:
        super().__init__(p)

    def __call__(self, sample: dict[str, Any]) -> dict[str, Any]:
        if self.rng.random() >= self.p:
            return sample
        w = sample["image"].shape[1]
        boxes = np.asarray(sample["boxes"], np.float32).reshape(-1, 4)
        lm = sample["landmarks"][:, FLIP_ORDER].copy()
        lm[..., 0] = w - lm[..., 0]  # same continuous convention as boxes
        flipped = np.stack([w - boxes[:, 2], boxes[:, 1], w - boxes[:, 0], boxes[:, 3]], 1)
        return sample | {"image": cv2.flip(sample["image"], 1), "boxes": flipped, "landmarks": lm}


@TRANSFORMS.register("hsv")
class HSV(_RandomStep):
    """YOLO-style colour jitter with probability ``p``. ``hue``: shift drawn from [-hue, hue] of the
    hue circle; ``saturation`` and ``value``: gains drawn from [1 - s, 1 + s] (as YOLOv5's augment_hsv).

    Done with three lookup tables in OpenCV's HSV space (YOLOv5's method) rather than
    albumentations' ColorJitter: 1.0 vs 1.4 ms CPU per 416 px image, within a ~6 ms budget."""

    def __init__(
        self, *, hue: float = 0.015, saturation: float = 0.7, value: float = 0.4, p: float = 1.0
    ) -> None:
        if not 0 <= hue <= 0.5 or not 0 <= saturation <= 1 or not 0 <= value <= 1:
            raise ValueError(
                f"hsv needs 0 <= hue <= 0.5 and gains in [0, 1], got {hue}, {saturation}, {value}"
            )
        super().__init__(p)
        self.hue, self.saturation, self.value = float(hue), float(saturation), float(value)
        self._x = np.arange(256, dtype=np.float32)

    def __call__(self, sample: dict[str, Any]) -> dict[str, Any]:
        if self.rng.random() >= self.p or not (self.hue or self.saturation or self.value):
            return sample
        dh = self.rng.uniform(-self.hue, self.hue) * 180  # OpenCV's 8-bit hue runs over [0, 180)
        gs, gv = self.rng.uniform(-1, 1, 2) * [self.saturation, self.value] + 1
        x = self._x
        hue, sat, val = cv2.split(cv2.cvtColor(sample["image"], cv2.COLOR_RGB2HSV))
        lut_h = np.mod(x + dh, 180).astype(np.uint8)
        lut_s = np.clip(x * gs, 0, 255).astype(np.uint8)
        lut_v = np.clip(x * gv, 0, 255).astype(np.uint8)
        hsv = cv2.merge((cv2.LUT(hue, lut_h), cv2.LUT(sat, lut_s), cv2.LUT(val, lut_v)))
        return sample | {"image": cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)}


def to_unit_float(a: np.ndarray) -> np.ndarray:
    """uint8 -> float32 in [0, 1]. In numpy: torch's intra-op threads make this 50-100x slower in the
    main process of a busy machine, for a job that is one pass over the pixels."""
    return np.divide(a, np.float32(255.0), dtype=np.float32)


@TRANSFORMS.register("to_tensor")
class ToTensor:
    """Sample -> ``{"image": float32 3xSxS in [0, 1], "target": {boxes, labels, ignore, landmarks},
    "meta"}`` (the last step of every pipeline).

    ``worker_uint8``: inside a DataLoader worker process, emit the image as uint8 3xSxS instead: a
    quarter of the bytes to pass between processes. Only for datasets read through ``FaceLoader``
    (``build_dataloader``; ``build_transforms`` sets it), which divides by 255 in the main process,
    so batches are the same either way. Outside workers (num_workers=0, previews) images are float."""

    def __init__(self, *, worker_uint8: bool = False) -> None:
        self.worker_uint8 = bool(worker_uint8)

    def __call__(self, sample: dict[str, Any]) -> dict[str, Any]:
        chw = np.ascontiguousarray(sample["image"].transpose(2, 0, 1))
        uint8 = self.worker_uint8 and get_worker_info() is not None
        img = torch.from_numpy(chw if uint8 else to_unit_float(chw))
        target = {
            "boxes": torch.from_numpy(np.asarray(sample["boxes"], np.float32).reshape(-1, 4)),
            "labels": torch.from_numpy(np.asarray(sample["labels"], np.int64).reshape(-1)),
            "ignore": torch.from_numpy(np.asarray(sample["ignore"], bool).reshape(-1)),
            "landmarks": torch.from_numpy(np.asarray(sample["landmarks"], np.float32).reshape(-1, 5, 2)),
        }
        return {"image": img, "target": target, "meta": sample.get("meta")}


@TRANSFORMS.register("min_face_size")
class MinFaceSize:
    """Faces whose shorter side is below ``min_size`` input pixels (after every augmentation)
    become ``ignore``: too small to learn, but a face, so never a negative. Never removed.
    ``build_transforms`` adds it last (before ToTensor) when ``min_face_size > 0``."""

    def __init__(self, *, min_size: float) -> None:
        if min_size < 0:
            raise ValueError(f"min_face_size must be >= 0, got {min_size}")
        self.min_size = float(min_size)

    def __call__(self, sample: dict[str, Any]) -> dict[str, Any]:
        b = np.asarray(sample["boxes"], np.float32).reshape(-1, 4)
        small = np.minimum(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]) < self.min_size
        return sample | {"ignore": np.asarray(sample["ignore"], bool) | small}


class Compose:
    """Apply transforms in order; ``set_seed`` gives each random step its own derived seed."""

    def __init__(self, transforms: Sequence[Callable[[dict[str, Any]], dict[str, Any]]]) -> None:
        self.transforms = list(transforms)

    def set_seed(self, seed: int) -> None:
        for i, t in enumerate(self.transforms):
            if isinstance(t, Seeded):
                t.set_seed((int(seed) * 1000003 + i) % 2**32)

    def __call__(self, sample: dict[str, Any]) -> dict[str, Any]:
        for t in self.transforms:
            sample = t(sample)
        return sample

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(type(t).__name__ for t in self.transforms)})"


class LetterboxPipeline(Compose):
    """What ``build_transforms`` returns: ``letterbox``, then ``after_letterbox`` (augmentations,
    [MinFaceSize], ToTensor), run as one Compose. Mosaic places images itself instead of the
    letterbox and then runs ``after_letterbox``, which holds the same step objects, so seeding the
    whole pipeline (``set_seed``: a seed per step index) seeds mosaic's steps too."""

    def __init__(self, letterbox: Letterbox, after_letterbox: Sequence[Callable[[dict[str, Any]], dict[str, Any]]]):
        super().__init__([letterbox, *after_letterbox])
        self.letterbox = letterbox
        self.after_letterbox = Compose(after_letterbox)


def build_transforms(
    specs: Sequence[Any] | Mapping[str, Any] | None, img_size: int, *, pad_value: int = LETTERBOX_PAD,
    min_face_size: float = 0.0,
) -> LetterboxPipeline:
    """Letterbox(img_size) -> each spec built from ``TRANSFORMS`` -> [MinFaceSize] -> ToTensor (which
    sends uint8 images out of loader workers, see ``ToTensor``).

    ``specs`` is a list of ``{type: name, ...}`` nodes, or a mapping of them (entries set to null
    are skipped, so a config can switch one off with ``aug.train.hflip=null``).
    """
    if isinstance(specs, Mapping):
        items = [(f"aug.{k}", v) for k, v in specs.items() if v is not None]
    else:
        items = [(f"aug[{i}]", v) for i, v in enumerate(specs or [])]
    letterbox = Letterbox(size=img_size, pad_value=pad_value)
    steps: list[Any] = []
    for where, spec in items:
        if isinstance(spec, Mapping) and spec.get("type") in ("letterbox", "to_tensor", "min_face_size"):
            raise ConfigError(f"'{where}': {spec['type']} is added automatically (min_face_size: set "
                              "aug.min_face_size); remove it from the list.")
        steps.append(build(spec, TRANSFORMS, where=where))
    if min_face_size > 0:
        steps.append(MinFaceSize(min_size=min_face_size))
    steps.append(ToTensor(worker_uint8=True))
    return LetterboxPipeline(letterbox, steps)
