"""Mosaic and MixUp as dataset wrappers around a ``FaceDataset``.

``Mosaic`` (YOLOv4): with probability ``p`` an item is four training images around a random centre,
otherwise one letterboxed image; either way followed by a random affine (scale, shift, rotation,
shear). Each image is scaled and placed straight into the S x S output in one resize (see
``facedet.data.geometry``), then the wrapped dataset's remaining transforms run (HSV, flip, ...,
minimum face size, to tensor). ``MixUp`` blends two finished items (``r ~ Beta(alpha, alpha)``) and
keeps the faces of both.

``p`` lives in shared memory (``SharedValue``), so the close-mosaic hook can switch mosaic off in
the main process and the loader's persistent worker processes see it at the next epoch.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from facedet.data.dataset import FaceDataset
from facedet.data.geometry import (
    apply_rotation_shear,
    concat_targets,
    finish_targets,
    map_targets,
    paste_scaled,
    random_affine_params,
    render_single,
)
from facedet.data.transforms import Compose, Letterbox
from facedet.registry import ConfigError, accepted_arguments, closest


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


def _split_transform(dataset: FaceDataset) -> tuple[int, int, Compose]:
    """(size, pad value, the transforms after the letterbox) of a dataset built by build_transforms."""
    t = dataset.transform
    if not isinstance(t, Compose) or not t.transforms or not isinstance(t.transforms[0], Letterbox):
        raise ConfigError("mosaic needs a dataset whose transform starts with a letterbox (build_transforms)")
    return t.transforms[0].size, t.transforms[0].pad_value, Compose(t.transforms[1:])


class Mosaic(Dataset):
    """4-image mosaic with probability ``p`` (else one image), then a random affine: scale gain in
    [1 - scale, 1 + scale], shift up to ``translate`` of the size, rotation up to ``degrees``, shear up
    to ``shear`` degrees. Faces cut so that less than ``min_visible`` remains become ignore."""

    def __init__(self, dataset: FaceDataset, *, p: float = 1.0, scale: float = 0.5, translate: float = 0.1,
                 degrees: float = 0.0, shear: float = 0.0, min_visible: float = 0.3) -> None:
        if not 0 <= p <= 1 or not 0 <= scale < 1 or not 0 <= translate <= 0.5 or not 0 <= min_visible <= 1:
            raise ConfigError(f"mosaic needs 0 <= p <= 1, 0 <= scale < 1, 0 <= translate <= 0.5 and "
                              f"0 <= min_visible <= 1; got p={p}, scale={scale}, translate={translate}, "
                              f"min_visible={min_visible}")
        self.dataset = dataset
        self.size, self.pad_value, self.post = _split_transform(dataset)
        self.p = SharedValue(p)
        self.scale, self.translate, self.degrees, self.shear = scale, translate, degrees, shear
        self.min_visible = min_visible
        self.rng = np.random.default_rng(0)

    @property
    def records(self):
        return self.dataset.records

    def set_seed(self, seed: int) -> None:
        self.rng = np.random.default_rng(int(seed))

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.post(self.raw_item(index))

    def raw_item(self, index: int) -> dict[str, Any]:
        """The S x S Sample before the post transforms (HSV, flip, ..., to tensor)."""
        s, tx, ty, deg, sh = random_affine_params(self.rng, scale=self.scale, translate=self.translate,
                                                  degrees=self.degrees, shear=self.shear)
        size = self.size
        first = self.dataset.load_sample(index, copy=False)
        if self.rng.random() < self.p.value:
            indices = [index, *self.rng.integers(0, len(self.dataset), 3).tolist()]
            img, tgt = self._mosaic(first, indices, s, (tx * size, ty * size))
            meta = {"image_id": first["image_id"], "orig_size": (size, size), "ratio": 1.0, "pad": (0.0, 0.0)}
        else:
            img, tgt, (sx, _, ox, oy) = render_single(first, size, s, (tx * size, ty * size), self.pad_value)
            h, w = first["image"].shape[:2]
            meta = {"image_id": first["image_id"], "orig_size": (h, w), "ratio": sx, "pad": (ox, oy)}
        img, tgt = apply_rotation_shear(img, tgt, deg, sh, self.pad_value)
        tgt = finish_targets(tgt, img.shape[:2], min_visible=self.min_visible)
        return {"image": img, **tgt, "image_id": first["image_id"], "orig_size": first["orig_size"], "meta": meta}

    def _mosaic(self, first: dict[str, Any], indices: list[int], gain: float, shift: tuple[float, float]):
        """Four images, each letterboxed to ``size`` and scaled by ``gain``, meeting at a random
        centre: YOLOv5's layout on a 2S canvas whose centre maps to the output centre."""
        size = self.size
        out = np.full((size, size, 3), self.pad_value, np.uint8)
        cx, cy = self.rng.uniform(0.5 * size, 1.5 * size, 2)  # mosaic centre on the 2S canvas
        mx = (cx - size) * gain + size / 2 + shift[0]  # ... in output pixels
        my = (cy - size) * gain + size / 2 + shift[1]
        parts = []
        for k, j in enumerate(indices):
            sample = first if k == 0 else self.dataset.load_sample(j, copy=False)
            h, w = sample["image"].shape[:2]
            f = size / max(h, w) * gain
            x0 = mx - w * f if k in (0, 2) else mx  # 0 top-left, 1 top-right, 2 bottom-left, 3 bottom-right
            y0 = my - h * f if k in (0, 1) else my
            parts.append(map_targets(sample, paste_scaled(out, sample["image"], f, f, x0, y0)))
        return out, concat_targets(parts)


class MixUp(Dataset):
    """With probability ``p`` blend the item with a random other one, ``r ~ Beta(alpha, alpha)``
    (YOLOv5: alpha 32, r near 0.5); the faces of both are kept."""

    def __init__(self, dataset: Dataset, *, p: float = 0.1, alpha: float = 32.0) -> None:
        if not 0 <= p <= 1 or alpha <= 0:
            raise ConfigError(f"mixup needs 0 <= p <= 1 and alpha > 0, got p={p}, alpha={alpha}")
        self.dataset = dataset
        self.p = SharedValue(p)
        self.alpha = float(alpha)
        self.rng = np.random.default_rng(0)

    @property
    def records(self):
        return self.dataset.records

    def set_seed(self, seed: int) -> None:
        self.rng = np.random.default_rng(int(seed))

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict[str, Any]:
        item = self.dataset[index]
        if self.rng.random() >= self.p.value:
            return item
        other = self.dataset[int(self.rng.integers(0, len(self.dataset)))]
        if other["image"].shape != item["image"].shape:
            raise RuntimeError(f"mixup needs equal image sizes, got {tuple(item['image'].shape)} and "
                               f"{tuple(other['image'].shape)}")
        r = float(self.rng.beta(self.alpha, self.alpha))
        image = item["image"] * r + other["image"] * (1 - r)
        if item["image"].dtype == torch.uint8:  # inside a loader worker (see loader.py)
            image = image.round_().to(torch.uint8)
        target = {k: torch.cat([item["target"][k], other["target"][k]]) for k in item["target"]}
        return {"image": image, "target": target, "meta": item["meta"]}


def find_wrappers(dataset: Any) -> list[Any]:
    """The Mosaic / MixUp wrappers in a dataset chain (looking through ``.dataset``)."""
    found = []
    while dataset is not None:
        if isinstance(dataset, (Mosaic, MixUp)):
            found.append(dataset)
        dataset = getattr(dataset, "dataset", None)
    return found


def wrap_train_dataset(dataset: FaceDataset, aug: Mapping[str, Any] | None) -> Dataset:
    """Wrap the training set per the ``aug`` config: ``aug.mosaic`` (when ``p > 0``) and then
    ``aug.mixup`` (when ``p > 0``); returns ``dataset`` itself when neither is on."""
    aug = aug or {}
    out: Dataset = dataset
    for key, cls in (("mosaic", Mosaic), ("mixup", MixUp)):
        node = dict(aug.get(key) or {})
        if node.get("p", 0) > 0:
            _check_keys(cls, node, f"aug.{key}")
            out = cls(out, **node)
    return out


def _check_keys(cls: type, node: Mapping[str, Any], where: str) -> None:
    names = [n for n in accepted_arguments(cls)[0] if n not in ("self", "dataset")]
    for k in node:
        if k not in names:
            raise ConfigError(f"Unknown key '{where}.{k}'. Accepted keys: {', '.join(names)}."
                              + (f" Did you mean '{closest(k, names)}'?" if closest(k, names) else ""))
