"""Builders shared by the training run, the command-line tools and the benchmarks: the device, the
data sets with their transforms, the loaders, and the settings recorded beside every evaluation.

They sit above data, models and evaluation and below the engine and the CLI, so a tool can build
what training builds without importing the training run."""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from facedet.inference.tta import DEFAULT_SCALES, TTA
from facedet.registry import DATASETS, ConfigError, build


def select_device(name: str = "auto", local_rank: int | None = None) -> torch.device:
    """``auto`` picks CUDA when present, else the CPU; an explicit CUDA device that is not there
    is an error rather than a silent fall-back. Under torchrun (``local_rank`` given) a CUDA
    choice becomes this process's GPU, ``cuda:LOCAL_RANK``."""
    if name == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device={name} but no CUDA device is available; use device=auto or device=cpu.")
    if device.type == "cuda" and local_rank is not None:
        device = torch.device("cuda", local_rank)
    return device


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def build_dataset(node: Any, *, img_size: int, aug: Any, cache_images: bool, where: str,
                  min_face_size: float = 0.0):
    from facedet.data import build_transforms, check_img_size  # registers datasets and transforms

    check_img_size(img_size, where="data.img_size")
    specs = OmegaConf.to_container(aug, resolve=True) if aug is not None else []
    transform = build_transforms(specs or [], img_size, min_face_size=min_face_size)
    return build(node, DATASETS, where=where, transform=transform, cache_images=cache_images)


def build_loaders(data: DictConfig, aug: DictConfig, *, batch_size: int, val_batch_size: int, num_workers: int,
                  seed: int, rank: int = 0, world_size: int = 1) -> tuple[Any, Any]:
    """Training and validation loaders of the ``data`` and ``aug`` nodes; ``batch_size`` is images per
    step over all processes: under DDP each rank gets ``batch_size / world_size`` images per batch
    from its own shard, and its share of the validation images."""
    from facedet.data import build_dataloader, wrap_train_dataset

    if batch_size % world_size:
        raise ConfigError(f"train.batch_size={batch_size} (images per step, all processes together) "
                          f"must be a multiple of the {world_size} processes.")
    size = train_img_size(data, aug)  # data.img_size, or aug.high_res.size (the high-res hook downsizes later)
    train_set = build_dataset(data.train, img_size=size, aug=aug.train, cache_images=data.cache_images,
                              where="data.train", min_face_size=float(aug.get("min_face_size") or 0))
    # mosaic, mixup
    train_set = wrap_train_dataset(train_set, OmegaConf.to_container(aug, resolve=True), img_size=size)
    val_set = build_dataset(data.val, img_size=data.img_size, aug=aug.get("val"), cache_images=data.cache_images,
                            where="data.val")
    if len(train_set) == 0:
        raise ConfigError("data.train has no images (see the load summary above).")
    # workers survive SIGTERM/SIGINT so the trainer can reach a clean stop; run_training shuts them down
    common = {"num_workers": num_workers, "seed": seed, "rank": rank, "world_size": world_size,
              "signal_proof_workers": True}
    train_loader = build_dataloader(train_set, batch_size=batch_size // world_size, shuffle=True, drop_last=True,
                                    **common)
    val_loader = build_dataloader(val_set, batch_size=val_batch_size, shuffle=False, **common)
    if len(train_loader) == 0:
        raise ConfigError(f"train.batch_size={batch_size} exceeds the {len(train_set)} training images.")
    return train_loader, val_loader


def train_img_size(data: Any, aug: Any) -> int:
    """The size the training loader renders (letterbox and mosaic): ``aug.high_res.size`` when set
    (> 0), else ``data.img_size``; validation and evaluation always use ``data.img_size``. A ConfigError
    names the key for a high-res size that is not a multiple of 32, is below ``data.img_size``, or is
    combined with multi-scale (two size schedules at once)."""
    from facedet.data import check_img_size

    deploy = int(data.img_size)
    node = aug.get("high_res") if aug is not None else None
    size = int((node or {}).get("size") or 0)
    if size <= 0:
        return deploy
    check_img_size(size, where="aug.high_res.size")
    if size < deploy:
        raise ConfigError(f"aug.high_res.size={size} is below data.img_size={deploy}: the high-res phase trains "
                          f"at a larger size than the deployment size (or set aug.high_res.size=0: off).")
    if (aug.get("multi_scale") or {}).get("enabled"):
        raise ConfigError("aug.high_res.size and aug.multi_scale.enabled cannot be combined: both set the training "
                          "size (set aug.multi_scale.enabled=false or aug.high_res.size=0).")
    return size


def eval_settings(*, img_size: int, postprocess: Mapping[str, Any] | DictConfig, data_name: str) -> dict[str, Any]:
    """The conditions behind every reported number: test size, post-processing, data, TTA."""
    post = OmegaConf.to_container(postprocess, resolve=True) if isinstance(postprocess, DictConfig) else postprocess
    return {"img_size": int(img_size), "tta": "none", "postprocess": dict(post), "data": data_name, "split": "val"}


@dataclass(frozen=True)
class EvalSpec:
    """The ``eval`` node, parsed once for training (the EvalHook) and tools/eval.py: the built
    ``evaluators``, the test-time augmentation ``tta``, whether to draw a precision-recall curve
    (``pr_curve``); for training also ``interval`` (``train.eval_interval``) and ``best_metric``
    (``train.best_metric``)."""

    evaluators: list[Any]
    tta: TTA
    pr_curve: bool = True
    interval: int = 1
    best_metric: str = "AP50"


def build_eval_spec(node: Mapping[str, Any] | DictConfig | None, records: Sequence[Any], *, interval: int = 1,
                    best_metric: str = "AP50") -> EvalSpec:
    """``EvalSpec`` of an ``eval`` node (``evaluators``, ``tta``, ``tta_scales``, ``pr_curve``; None:
    COCO, no TTA, PR curves) for a data set's ``records``."""
    from facedet.evaluation.base import build_evaluators

    e = OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else dict(node or {})
    return EvalSpec(evaluators=build_evaluators(e.get("evaluators"), records),
                    tta=TTA.from_mode(e.get("tta", "none"), e.get("tta_scales", DEFAULT_SCALES)),
                    pr_curve=bool(e.get("pr_curve", True)), interval=int(interval), best_metric=str(best_metric))

