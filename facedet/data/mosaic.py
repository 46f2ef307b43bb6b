"""Mosaic (YOLOv4) as a dataset wrapper around a ``FaceDataset``.

With probability ``p`` an item is four training images around a random centre, otherwise one
letterboxed image; either way followed by a random affine (scale, shift, rotation, shear). Each
image is scaled and placed straight into the S x S output in one resize (see
``facedet.data.geometry``), then the wrapped dataset's transforms after its letterbox run (HSV,
flip, ..., minimum face size, to tensor). S and the canvas grey are given by the framework
(``data.img_size`` and the letterbox's pad, see ``wrap_train_dataset``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

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
from facedet.data.transforms import LETTERBOX_PAD, LetterboxPipeline
from facedet.data.wrappers import DatasetWrapper, SharedValue, find_wrappers, wrap_train_dataset
from facedet.registry import DATASET_WRAPPERS, ConfigError

# re-exported: callers import them from here (engine/data_hooks.py: find_wrappers)
__all__ = ["Mosaic", "SharedValue", "find_wrappers", "wrap_train_dataset"]


@DATASET_WRAPPERS.register("mosaic")
class Mosaic(DatasetWrapper):
    """4-image mosaic with probability ``p`` (else one image), then a random affine: scale gain in
    [1 - scale, 1 + scale], shift up to ``translate`` of the size, rotation up to ``degrees``, shear up
    to ``shear`` degrees. Faces cut so that less than ``min_visible`` remains become ignore. Output
    images are ``size`` x ``size``, with ``pad_value`` where no image lands."""

    def __init__(self, dataset: FaceDataset, *, size: int, pad_value: int = LETTERBOX_PAD, p: float = 1.0,
                 scale: float = 0.5, translate: float = 0.1, degrees: float = 0.0, shear: float = 0.0,
                 min_visible: float = 0.3) -> None:
        if not 0 <= p <= 1 or not 0 <= scale < 1 or not 0 <= translate <= 0.5 or not 0 <= min_visible <= 1:
            raise ConfigError(f"mosaic needs 0 <= p <= 1, 0 <= scale < 1, 0 <= translate <= 0.5 and "
                              f"0 <= min_visible <= 1; got p={p}, scale={scale}, translate={translate}, "
                              f"min_visible={min_visible}")
        if not isinstance(dataset.transform, LetterboxPipeline):
            raise ConfigError("mosaic needs a dataset whose transform comes from build_transforms (letterbox first)")
        super().__init__(dataset, p=p)
        self.size, self.pad_value = int(size), int(pad_value)
        self.post = dataset.transform.after_letterbox  # mosaic takes the letterbox's place
        self.scale, self.translate, self.degrees, self.shear = scale, translate, degrees, shear
        self.min_visible = min_visible

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
