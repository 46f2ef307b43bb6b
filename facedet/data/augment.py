"""Training augmentations beyond the basics in ``transforms.py``, registered in ``TRANSFORMS``.

Photometric ones (brightness/contrast, blur, noise, histogram equalisation) and cutout wrap
albumentations. The geometric ones (random affine, random scale-crop keeping faces) use
``facedet.data.geometry`` (why: see there). All of them run on the letterboxed S x S Sample and keep
``boxes``, ``labels``, ``ignore`` and ``landmarks`` aligned; every random one has ``set_seed``.
"""

from __future__ import annotations

from typing import Any

import albumentations as A
import cv2
import numpy as np

from facedet.data.geometry import (
    apply_rotation_shear,
    finish_targets,
    map_targets,
    paste_scaled,
    random_affine_params,
    render_single,
)
from facedet.data.transforms import _Albumentations, _RandomStep
from facedet.registry import TRANSFORMS


def _check_range(name: str, value: float, lo: float, hi: float) -> None:
    if not lo <= value <= hi:
        raise ValueError(f"{name} must lie in [{lo}, {hi}], got {value}")


@TRANSFORMS.register("affine")
class RandomAffine(_RandomStep):
    """YOLO-style random affine on the letterboxed image: scale gain in [1 - scale, 1 + scale] about
    the centre, shift up to ``translate`` of the size, rotation up to ``degrees``, shear up to
    ``shear`` degrees. Faces less than ``min_visible`` inside the output become ignore."""

    def __init__(self, *, scale: float = 0.5, translate: float = 0.1, degrees: float = 0.0, shear: float = 0.0,
                 min_visible: float = 0.3, pad_value: int = 128, p: float = 1.0) -> None:
        super().__init__(p)
        _check_range("scale", scale, 0.0, 0.95)
        _check_range("translate", translate, 0.0, 0.5)
        _check_range("min_visible", min_visible, 0.0, 1.0)
        self.scale, self.translate, self.degrees, self.shear = scale, translate, degrees, shear
        self.min_visible, self.pad_value = min_visible, pad_value

    def __call__(self, sample: dict[str, Any]) -> dict[str, Any]:
        if self.rng.random() >= self.p:
            return sample
        size = sample["image"].shape[0]
        s, tx, ty, deg, sh = random_affine_params(self.rng, scale=self.scale, translate=self.translate,
                                                  degrees=self.degrees, shear=self.shear)
        img, tgt, _ = render_single(sample, size, s, (tx * size, ty * size), self.pad_value)
        img, tgt = apply_rotation_shear(img, tgt, deg, sh, self.pad_value)
        return sample | {"image": img} | finish_targets(tgt, img.shape[:2], min_visible=self.min_visible)


@TRANSFORMS.register("scale_crop")
class RandomScaleCrop(_RandomStep):
    """Zoom in by a random factor in [1, ``max_scale``] and crop back to the input size, at a
    random position that keeps every face inside (the zoom is reduced until they fit); the small
    faces of a crowd become larger. Ignored faces may be cut."""

    def __init__(self, *, max_scale: float = 2.0, p: float = 0.5) -> None:
        super().__init__(p)
        _check_range("max_scale", max_scale, 1.0, 10.0)
        self.max_scale = float(max_scale)

    def __call__(self, sample: dict[str, Any]) -> dict[str, Any]:
        if self.rng.random() >= self.p:
            return sample
        img = sample["image"]
        h, w = img.shape[:2]
        boxes = sample["boxes"][~sample["ignore"]]
        lo = boxes[:, :2].min(0) if len(boxes) else np.array([w, h], np.float64)
        hi = boxes[:, 2:].max(0) if len(boxes) else np.zeros(2)
        span = np.maximum(hi - lo, 0)
        s = self.rng.uniform(1.0, self.max_scale)
        s = float(min(s, w / max(span[0], 1e-6), h / max(span[1], 1e-6))) if len(boxes) else s
        cw, ch = w / s, h / s  # crop window in input pixels
        # window origin so that [lo, hi] stays inside it, and the window inside the image
        x_min, x_max = max(0.0, hi[0] - cw), min(lo[0], w - cw)
        y_min, y_max = max(0.0, hi[1] - ch), min(lo[1], h - ch)
        x = self.rng.uniform(x_min, max(x_min, x_max))
        y = self.rng.uniform(y_min, max(y_min, y_max))
        out = np.full_like(img, 128)
        mapping = paste_scaled(out, img, s, s, -x * s, -y * s)
        tgt = map_targets(sample, mapping)
        return sample | {"image": out} | finish_targets(tgt, out.shape[:2], min_visible=0.0)


@TRANSFORMS.register("brightness_contrast")
class BrightnessContrast(_Albumentations):
    """Random brightness and contrast (albumentations RandomBrightnessContrast)."""

    def __init__(self, *, brightness: float = 0.2, contrast: float = 0.2, p: float = 0.5) -> None:
        t = A.RandomBrightnessContrast(brightness_limit=brightness, contrast_limit=contrast, p=p)
        super().__init__([t], geometric=False)


@TRANSFORMS.register("blur")
class Blur(_Albumentations):
    """Gaussian blur (sigma up to ``max_sigma``) or motion blur (kernel up to ``max_motion``), one of
    them with probability ``p``: faces in crowds are often out of focus or moving."""

    def __init__(self, *, max_sigma: float = 1.5, max_motion: int = 7, p: float = 0.1) -> None:
        if max_motion < 3 or max_motion % 2 == 0:
            raise ValueError(f"max_motion must be an odd kernel size >= 3, got {max_motion}")
        t = A.OneOf([A.GaussianBlur(sigma_limit=(0.3, max_sigma), p=1.0),
                     A.MotionBlur(blur_limit=(3, max_motion), p=1.0)], p=p)
        super().__init__([t], geometric=False)


@TRANSFORMS.register("noise")
class Noise(_Albumentations):
    """Gaussian sensor noise with standard deviation up to ``max_std`` (fraction of 255)."""

    def __init__(self, *, max_std: float = 0.05, p: float = 0.1) -> None:
        _check_range("max_std", max_std, 0.0, 1.0)
        # noise_scale_factor 0.5 draws the noise at half resolution: 4x cheaper, still per-pixel-ish
        t = A.GaussNoise(std_range=(0.0, max_std), noise_scale_factor=0.5, p=p)
        super().__init__([t], geometric=False)


@TRANSFORMS.register("equalize")
class Equalize(_Albumentations):
    """Histogram equalisation: ``method`` ``clahe`` (local, on lightness) or ``global`` (per channel);
    an option for dark and low-contrast photos."""

    def __init__(self, *, method: str = "clahe", clip_limit: float = 2.0, p: float = 0.5) -> None:
        methods = {"clahe": lambda: A.CLAHE(clip_limit=(1.0, clip_limit), p=p), "global": lambda: A.Equalize(p=p)}
        if method not in methods:
            raise ValueError(f"equalize method must be one of {sorted(methods)}, got {method!r}")
        super().__init__([methods[method]()], geometric=False)


@TRANSFORMS.register("cutout")
class Cutout(_Albumentations):
    """Random erasing: 1..``max_holes`` grey rectangles of ``min_size``..``max_size`` (fractions of
    the side). A face covered more than ``max_covered`` becomes ignore (it is mostly gone, but it
    is no background either); nothing is removed."""

    def __init__(self, *, max_holes: int = 4, min_size: float = 0.05, max_size: float = 0.2,
                 max_covered: float = 0.6, fill: int = 128, p: float = 0.5) -> None:
        if max_holes < 1 or not 0 < min_size <= max_size <= 1:
            raise ValueError(f"cutout needs max_holes >= 1 and 0 < min_size <= max_size <= 1, got "
                             f"{max_holes}, {min_size}, {max_size}")
        _check_range("max_covered", max_covered, 0.0, 1.0)
        self.max_covered = float(max_covered)
        t = A.CoarseDropout(num_holes_range=(1, max_holes), hole_height_range=(min_size, max_size),
                            hole_width_range=(min_size, max_size), fill=fill, p=p)
        super().__init__([t], geometric=False)
        # image-only run (the box logic is ours), but keep the applied parameters to read the holes
        self.pipeline = A.Compose([t], save_applied_params=True)

    def __call__(self, sample: dict[str, Any]) -> dict[str, Any]:
        res = self.pipeline(image=sample["image"])
        out = sample | {"image": res["image"]}
        holes = [np.asarray(prm["holes"]) for name, prm in res["applied_transforms"] if name == "CoarseDropout"]
        if not holes or not len(holes[0]) or not len(sample["boxes"]):
            return out
        h, w = sample["image"].shape[:2]
        mask = np.zeros((h, w), np.uint8)
        for x1, y1, x2, y2 in holes[0].astype(int):
            mask[y1:y2, x1:x2] = 1
        integral = cv2.integral(mask)  # (h+1, w+1): covered pixels of any box in O(1)
        b = np.clip(np.round(sample["boxes"]).astype(int), 0, [w, h, w, h])
        covered = integral[b[:, 3], b[:, 2]] - integral[b[:, 1], b[:, 2]] - integral[b[:, 3], b[:, 0]] \
            + integral[b[:, 1], b[:, 0]]
        area = np.maximum((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]), 1)
        out["ignore"] = sample["ignore"] | (covered / area > self.max_covered)
        return out
