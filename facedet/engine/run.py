"""Turn a composed config into a training run: build data, model, optimizer and hooks, train, and
write the run directory. ``run_training`` is what ``tools/train.py`` calls inside Hydra, and what
tests call with a config from Hydra's compose API."""

from __future__ import annotations

import json
import logging
import os
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from facedet.engine.ema import ModelEMA
from facedet.engine.eval_hook import build_eval_hook
from facedet.engine.hooks import CheckpointHook, EMAHook, EvalHook, LoggingHook, count_parameters
from facedet.engine.optim import WarmupCosine, build_optimizer
from facedet.engine.trainer import Trainer
from facedet.models import Detector, build_detector
from facedet.registry import DATASETS, ConfigError, build

log = logging.getLogger(__name__)


def select_device(name: str = "auto") -> torch.device:
    """``auto`` picks CUDA when present, else the CPU; an explicit CUDA device that is not there
    is an error rather than a silent fall-back."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device={name} but no CUDA device is available; use device=auto or device=cpu.")
    return device


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def build_dataset(node: Any, *, img_size: int, aug: Any, cache_images: bool, where: str):
    from facedet.data import build_transforms  # registers datasets and transforms

    if img_size % 32:
        raise ConfigError(f"data.img_size must be a multiple of 32 (the largest stride), got {img_size}.")
    specs = OmegaConf.to_container(aug, resolve=True) if aug is not None else []
    transform = build_transforms(specs or [], img_size)
    return build(node, DATASETS, where=where, transform=transform, cache_images=cache_images)


def build_loaders(cfg: DictConfig) -> tuple[Any, Any]:
    from facedet.data import build_dataloader

    d = cfg.data
    train_set = build_dataset(d.train, img_size=d.img_size, aug=cfg.aug.train,
                              cache_images=d.cache_images, where="data.train")
    val_set = build_dataset(d.val, img_size=d.img_size, aug=cfg.aug.get("val"),
                            cache_images=d.cache_images, where="data.val")
    if len(train_set) == 0:
        raise ConfigError("data.train has no images (see the load summary above).")
    train_loader = build_dataloader(train_set, batch_size=cfg.train.batch_size, shuffle=True,
                                    num_workers=cfg.train.num_workers, seed=cfg.seed, drop_last=True)
    val_loader = build_dataloader(val_set, batch_size=cfg.eval.batch_size, shuffle=False,
                                  num_workers=cfg.train.num_workers, seed=cfg.seed)
    if len(train_loader) == 0:
        raise ConfigError(f"train.batch_size={cfg.train.batch_size} exceeds the {len(train_set)} training images.")
    return train_loader, val_loader


def eval_settings(cfg: DictConfig) -> dict[str, Any]:
    """The conditions behind every reported number: test size, thresholds, TTA."""
    post = OmegaConf.to_container(cfg.model.postprocess, resolve=True)
    return {"img_size": int(cfg.data.img_size), "tta": "none", "postprocess": post,
            "data": cfg.data.name, "split": "val"}


def run_training(cfg: DictConfig, run_dir: str | Path, *, progress: bool = True) -> dict[str, Any]:
    """Train per ``cfg`` into ``run_dir``; returns the final metrics (also in ``metrics.json``)."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    if cfg.train.threads:
        torch.set_num_threads(int(cfg.train.threads))
    seed_everything(int(cfg.seed))
    device = select_device(str(cfg.device))
    started = time.perf_counter()

    train_loader, val_loader = build_loaders(cfg)
    model: Detector = build_detector(cfg.model).to(device)
    log.info("model %s: %.3f M parameters on %s", cfg.model.name, count_parameters(model) / 1e6, device)

    o, s, t = cfg.optim, cfg.schedule, cfg.train
    optimizer = build_optimizer(model, lr=o.lr, momentum=o.momentum, nesterov=o.nesterov,
                                weight_decay=o.weight_decay)
    steps = len(train_loader) * t.epochs
    warmup = max(int(s.warmup_epochs * len(train_loader)), int(s.warmup_min_steps))
    lr_factor = WarmupCosine(total_steps=steps, warmup_steps=warmup, final_ratio=s.final_ratio,
                             warmup_start=s.warmup_start)

    hooks: list = []
    if t.ema.enabled:
        hooks.append(EMAHook(ModelEMA(model, decay=t.ema.decay, tau=t.ema.tau)))
    config_dict = OmegaConf.to_container(cfg, resolve=True)
    hooks += [
        build_eval_hook(cfg, val_loader, run_dir=run_dir, settings=eval_settings(cfg), progress=progress),
        CheckpointHook(run_dir / "checkpoints", config=config_dict),
        LoggingHook(run_dir / "tb" if t.tensorboard else None, log_interval=t.log_interval, progress=progress),
    ]
    trainer = Trainer(model=model, optimizer=optimizer, train_loader=train_loader, device=device,
                      max_epochs=t.epochs, base_lr=o.lr, lr_factor=lr_factor, hooks=hooks, amp=t.amp,
                      grad_clip=t.grad_clip)
    trainer.train()

    best = getattr(trainer, "best_metrics", trainer.metrics)
    result = {
        "best": best,
        "final": trainer.metrics,
        "history": next(h.history for h in hooks if isinstance(h, EvalHook)),
        "best_metric": t.best_metric,
        "train_seconds": round(time.perf_counter() - started, 1),
        "device": str(device),
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "parameters": count_parameters(model),
    }
    (run_dir / "metrics.json").write_text(json.dumps(result, indent=2))
    log.info("best %s %.4f (epoch %s) | AP50 %.4f AP50:95 %.4f | %.0f s | run dir %s", t.best_metric,
             best[t.best_metric], best.get("epoch"), best["AP50"], best["AP"], result["train_seconds"], run_dir)
    return result
