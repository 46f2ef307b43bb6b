"""Training hooks of the data pipeline: close-mosaic, multi-scale, and the sample grid for TensorBoard.

Each is registered in ``HOOKS`` under the ``aug`` key that configures it (``aug.close_mosaic: N``,
``aug.multi_scale: {...}``; SAT in ``sat.py``), and ``build_data_hooks`` builds the ones the ``aug``
node asks for. Their ``priority`` puts their ``preprocess_batch`` in the order it must run:
multi-scale, SAT, then the grid (which so shows the images the model is really fed).
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf

import facedet.engine.sat  # noqa: F401  (registers the "sat" hook)
from facedet.engine.hook_base import PRIORITY_CLOSE_MOSAIC, PRIORITY_MULTI_SCALE, PRIORITY_SAMPLE_GRID, HookBase
from facedet.registry import HOOKS, ConfigError, accepted_arguments, build

log = logging.getLogger(__name__)


class CloseMosaicHook(HookBase):
    """Switch mosaic, copy-paste and mixup off for the last ``epochs`` epochs (YOLOX / ultralytics): the model
    ends on images like the test images. The wrappers' probabilities live in shared memory, so the
    loader's persistent workers see the change from the next epoch on; the state follows from the
    epoch, so a resumed run gets it right too."""

    priority = PRIORITY_CLOSE_MOSAIC
    state_key = "close_mosaic"

    def __init__(self, wrappers: list[Any], *, epochs: int) -> None:
        self.wrappers = wrappers
        self.epochs = int(epochs)
        self.initial = [w.p.value for w in wrappers]
        self.closed = False

    def before_epoch(self) -> None:
        t = self.trainer
        close = t.epoch >= max(1, t.max_epochs - self.epochs)  # the first epoch always keeps mosaic
        if close != self.closed:
            for w, p in zip(self.wrappers, self.initial, strict=True):
                w.p.value = 0.0 if close else p
            self.closed = close
            if close:
                log.info("close-mosaic: mosaic/copy-paste/mixup off from epoch %d of %d", t.epoch + 1, t.max_epochs)


def resize_batch(batch: dict[str, Any], size: int, *, min_face_size: float = 0.0) -> dict[str, Any]:
    """Resize square ``images`` (B, 3, S, S) to ``size`` and scale the targets; faces whose shorter
    side falls below ``min_face_size`` become ignore. Antialiased when shrinking."""
    images = batch["images"]
    s = images.shape[-1]
    if size == s and min_face_size <= 0:
        return batch
    f = size / s
    if size != s:
        images = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False, antialias=f < 1)
    targets = []
    for t in batch["targets"]:
        boxes = t["boxes"] * f
        wh = boxes[:, 2:] - boxes[:, :2]
        small = wh.min(1).values < min_face_size if len(boxes) else torch.zeros_like(t["ignore"])
        targets.append(t | {"boxes": boxes, "landmarks": t["landmarks"] * f, "ignore": t["ignore"] | small})
    return batch | {"images": images, "targets": targets}


class MultiScaleHook(HookBase):
    """A random input size per batch, a multiple of ``stride`` in [min_scale, max_scale] x ``img_size``
    (YOLOv3's multi-scale training). The size is a function of (seed, step): reproducible, identical
    on every DDP rank, and unchanged by a resume."""

    priority = PRIORITY_MULTI_SCALE
    state_key = "multi_scale"

    def __init__(self, *, img_size: int, min_scale: float, max_scale: float, seed: int = 0, stride: int = 32,
                 min_face_size: float = 0.0) -> None:
        if not 0 < min_scale <= max_scale:
            raise ConfigError(f"aug.multi_scale needs 0 < min_scale <= max_scale, got {min_scale}, {max_scale}")
        lo = max(stride, math.ceil(img_size * min_scale / stride) * stride)
        hi = max(lo, math.floor(img_size * max_scale / stride) * stride)
        self.sizes = list(range(lo, hi + 1, stride))
        self.seed = int(seed)
        self.min_face_size = float(min_face_size)

    def preprocess_batch(self, batch: dict[str, Any]) -> dict[str, Any]:
        rng = np.random.default_rng([self.seed, self.trainer.step, 7])
        size = self.sizes[int(rng.integers(len(self.sizes)))]
        return resize_batch(batch, size, min_face_size=self.min_face_size)


class SampleGridHook(HookBase):
    """Sends a grid of the first training batch (as fed to the model: after augmentation,
    multi-scale and SAT) to ``trainer.tb_writer``, with faces in green and ignored faces in orange."""

    priority = PRIORITY_SAMPLE_GRID
    state_key = "sample_grid"

    def __init__(self, *, max_images: int = 16) -> None:
        self.max_images = max_images
        self.done = False

    def preprocess_batch(self, batch: dict[str, Any]) -> dict[str, Any]:
        if not self.done:
            self.done = True
            writer = self.trainer.tb_writer
            if writer is not None:
                from facedet.data.visualize import batch_grid

                grid = batch_grid(batch, max_images=self.max_images)
                writer.add_image("train/batch", grid, self.trainer.step, dataformats="HWC")
        return batch


@HOOKS.register("close_mosaic")
def close_mosaic(*, epochs: int | None, train_dataset: Any) -> CloseMosaicHook | None:
    """``aug.close_mosaic: N``: mosaic, copy-paste and mixup off for the last N epochs (0 or null: never)."""
    from facedet.data import find_wrappers

    epochs = int(epochs or 0)
    if epochs <= 0:
        return None
    wrappers = find_wrappers(train_dataset)
    if not wrappers:
        log.warning("aug.close_mosaic=%d has no effect: neither mosaic nor mixup is on", epochs)
        return None
    return CloseMosaicHook(wrappers, epochs=epochs)


@HOOKS.register("multi_scale")
def multi_scale(*, enabled: bool = False, min_scale: float = 0.5, max_scale: float = 1.5, img_size: int,
                seed: int, min_face_size: float | None = 0.0) -> MultiScaleHook | None:
    """``aug.multi_scale: {enabled, min_scale, max_scale}``: a random input size per batch."""
    if not enabled:
        return None
    return MultiScaleHook(img_size=int(img_size), min_scale=float(min_scale), max_scale=float(max_scale),
                          seed=int(seed), min_face_size=float(min_face_size or 0))


@HOOKS.register("sample_grid")
def sample_grid(*, max_images: int = 16) -> SampleGridHook:
    """The first training batch as a TensorBoard image grid (built when ``train.tensorboard``)."""
    return SampleGridHook(max_images=max_images)


def build_data_hooks(aug: DictConfig | dict[str, Any], *, train_dataset: Any, img_size: int, seed: int,
                     tensorboard: bool) -> list[HookBase]:
    """The hooks the ``aug`` node asks for: each of its keys registered in ``HOOKS`` is built from
    its value (a mapping of the hook's keys, or a single number for a hook with one key, as
    ``close_mosaic: 3``) with the run's values it needs; a hook that its config switches off
    builds to nothing. Plus the sample grid with ``tensorboard``."""
    node = OmegaConf.to_container(aug, resolve=True) if isinstance(aug, DictConfig) else dict(aug)
    context = {"train_dataset": train_dataset, "img_size": img_size, "seed": seed,
               "min_face_size": node.get("min_face_size")}
    hooks = [_build_hook(name, value, context) for name, value in node.items() if name in HOOKS]
    if tensorboard:
        hooks.append(build({"type": "sample_grid"}, HOOKS, where="sample_grid"))
    return [h for h in hooks if h is not None]


def _build_hook(name: str, value: Any, context: dict[str, Any]) -> HookBase | None:
    """``HOOKS[name]`` from the config ``value`` plus the ``context`` values its factory takes."""
    accepted = accepted_arguments(HOOKS.get(name))[0]
    extra = {k: v for k, v in context.items() if k in accepted}
    if value is None:
        return None
    if not isinstance(value, dict):  # a single number: the one key the hook's config has
        keys = [k for k in accepted if k not in context]
        if len(keys) != 1:
            raise ConfigError(f"aug.{name} must be a mapping of {', '.join(keys)}, got {value!r}")
        value = {keys[0]: value}
    return build({"type": name, **value}, HOOKS, where=f"aug.{name}", **extra)
