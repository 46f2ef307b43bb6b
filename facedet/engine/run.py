"""Turn a composed config into a training run: build data, model, optimizer and hooks, train, and
write the run directory. ``run_training`` is what ``tools/train.py`` calls inside Hydra, and what
tests call with a config from Hydra's compose API."""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from facedet.anchors import check_training_anchors
from facedet.builders import build_eval_spec, build_loaders, eval_settings, seed_everything, select_device
from facedet.config_check import validate_train_config
from facedet.data import innermost_dataset
from facedet.data.landmark_coverage import check_training_landmarks
from facedet.engine import distributed as du
from facedet.engine.data_hooks import build_data_hooks
from facedet.engine.distill import attach_distillation
from facedet.engine.ema import ModelEMA
from facedet.engine.eval_hook import build_eval_hook
from facedet.engine.hook_base import HookBase
from facedet.engine.hooks import CheckpointHook, EMAHook, EvalHook, LoggingHook, count_parameters
from facedet.engine.model_hooks import model_hooks
from facedet.engine.optim import build_optimizer, build_schedule
from facedet.engine.prediction_grid import PredictionGridHook
from facedet.engine.resume import resume_trainer
from facedet.engine.trainer import Trainer
from facedet.evaluation.base import to_json
from facedet.models import Detector, build_detector
from facedet.models.info import model_info
from facedet.models.weights import load_weights

log = logging.getLogger(__name__)


def accumulation(batch_size: int, nominal: int) -> tuple[int, float]:
    """(batches per optimizer step, weight-decay factor) for a nominal batch size, as YOLOv5 does:
    ``accumulate = round(nominal / batch_size)``, weight decay scaled by ``batch * accumulate / nominal``.
    ``nominal <= 0`` switches accumulation off."""
    if nominal <= 0:
        return 1, 1.0
    accumulate = max(round(nominal / batch_size), 1)
    return accumulate, batch_size * accumulate / nominal


@contextlib.contextmanager
def _deterministic(enabled: bool) -> Iterator[None]:
    """Deterministic kernels for the run (restored afterwards: tests share one process)."""
    if not enabled:
        yield
        return
    old = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
           torch.backends.cudnn.benchmark)
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # cuBLAS needs it for determinism
    torch.use_deterministic_algorithms(True, warn_only=True)  # warn, not fail, where CUDA has no such kernel
    torch.backends.cudnn.benchmark = False
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(old[0], warn_only=old[1])
        torch.backends.cudnn.benchmark = old[2]


def run_training(cfg: DictConfig, run_dir: str | Path, *, progress: bool = True,
                 extra_hooks: Sequence[HookBase] = ()) -> dict[str, Any]:
    """Train per ``cfg`` into ``run_dir``; returns the final metrics (also in ``metrics.json``).

    Under ``torchrun`` every process calls this; rank 0's ``run_dir`` is used by all, and only
    rank 0 writes there. ``extra_hooks`` run by their ``priority``: by default after the data hooks,
    before the checkpoint and logging hooks (``facedet.engine.hook_base``).
    ``result["interrupted"]`` names the signal when SIGTERM/SIGINT stopped the run (``last.pt``
    is saved at that point and the run resumes exactly from it).
    """
    validate_train_config(cfg)  # types and ranges, before any data is rendered or read
    world = du.env_world()
    device = select_device(str(cfg.device), world.local_rank if world.enabled else None)
    dist_info = du.init_distributed(device, str(cfg.train.get("dist_backend", "auto")))
    try:
        with _deterministic(bool(cfg.train.get("deterministic", False))):
            return _run(cfg, run_dir, device, dist_info, progress=progress, extra_hooks=extra_hooks)
    finally:
        du.cleanup()


def _run(cfg: DictConfig, run_dir: str | Path, device: torch.device, world: du.DistInfo, *, progress: bool,
         extra_hooks: Sequence[HookBase]) -> dict[str, Any]:
    main = world.rank == 0
    run_dir = Path(du.broadcast_object(str(Path(run_dir).absolute())))
    if main:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    else:  # rank-0-only logging: other ranks report warnings and errors only
        logging.getLogger("facedet").setLevel(logging.WARNING)
        progress = False
    t = cfg.train
    if t.threads:
        torch.set_num_threads(int(t.threads))
    seed_everything(int(cfg.seed))
    started = time.perf_counter()
    if world.enabled:
        log.info("distributed: %d processes, backend %s, %d images per process per batch", world.world_size,
                 world.backend, t.batch_size // world.world_size)

    # the model first: a typo in its config fails at once, before data is rendered or loaded
    model: Detector = build_detector(cfg.model)
    if cfg.model.get("weights"):  # a user's local file: state dict, checkpoint or Darknet .weights
        log.info(load_weights(model, cfg.model.weights, partial=bool(cfg.model.get("weights_partial"))).summary())
    model = model.to(device)
    attach_distillation(model, cfg.get("distill"), device)  # distill.teacher: wraps the loss (off by default)
    with du.main_process_first():  # rank 0 renders/caches data first
        train_loader, val_loader = build_loaders(
            cfg.data, cfg.aug, batch_size=int(cfg.train.batch_size), val_batch_size=int(cfg.eval.batch_size),
            num_workers=int(cfg.train.num_workers), seed=int(cfg.seed), rank=world.rank, world_size=world.world_size)
    try:
        return _train(cfg, run_dir, device, world, model, train_loader, val_loader, started, progress=progress,
                      extra_hooks=extra_hooks)
    finally:
        from facedet.data.loader import shutdown_workers

        for loader in (train_loader, val_loader):
            shutdown_workers(loader)


def _train(cfg: DictConfig, run_dir: Path, device: torch.device, world: du.DistInfo, model: Detector,
           train_loader: Any, val_loader: Any, started: float, *, progress: bool,
           extra_hooks: Sequence[HookBase]) -> dict[str, Any]:
    t, main = cfg.train, world.rank == 0
    info = model_info(model, int(cfg.data.img_size), depth=1)  # also what tools/model_info.py prints
    log.info("model %s on %s: %s\n%s", cfg.model.name, device, info.summary(), info.table())
    if main:
        records = innermost_dataset(train_loader.dataset).records
        # logs the fit; warns below BPR 0.98, saying why
        check_training_anchors(records, model.anchors, img_size=int(cfg.data.img_size), anchor_iou=model.anchor_iou,
                               min_face_size=float(cfg.aug.get("min_face_size") or 0), data_name=str(cfg.data.name))
        check_training_landmarks(records, model.num_landmarks, data_name=str(cfg.data.name))
    model = _sync_bn(model, device, enabled=bool(t.get("sync_bn", False)) and world.enabled)
    accumulate, wd_scale = accumulation(int(t.batch_size), int(t.get("nominal_batch_size", 0)))
    if accumulate > 1 or wd_scale != 1.0:
        log.info("gradient accumulation: %d batches of %d per optimizer step (nominal batch %d); weight decay "
                 "x %.3g", accumulate, t.batch_size, t.get("nominal_batch_size", 0), wd_scale)
    optimizer = build_optimizer(model, cfg.optim, weight_decay_scale=wd_scale)
    lr_factor = build_schedule(cfg.schedule, steps_per_epoch=len(train_loader), epochs=int(t.epochs))
    config_dict = OmegaConf.to_container(cfg, resolve=True)
    hooks = _hooks(cfg, model, train_loader, val_loader, run_dir, config_dict, main=main, progress=progress,
                   extra_hooks=extra_hooks)
    trainer = Trainer(model=model, optimizer=optimizer, train_loader=train_loader, device=device,
                      max_epochs=t.epochs, base_lr=cfg.optim.lr, lr_factor=lr_factor, hooks=hooks, amp=t.amp,
                      grad_clip=t.grad_clip, accumulate=accumulate, nan_patience=int(t.get("nan_patience", 10)),
                      find_unused_parameters=bool(t.get("ddp_find_unused", False)))
    if world.rank > 0:
        seed_everything(int(cfg.seed) + world.rank)  # same weights everywhere, different random draws per rank
    resumed = resume_trainer(trainer, cfg, config_dict, run_dir)
    trainer.train()
    result = _result(cfg, trainer, world, resumed, started)
    if main:
        (run_dir / "metrics.json").write_text(to_json(result, indent=2))  # NaN -> null
        best = result["best"]
        if "AP50" in best:
            log.info("best %s %.4f (epoch %s) | AP50 %.4f AP50:95 %.4f | %.0f s | run dir %s", t.best_metric,
                     best[t.best_metric], best.get("epoch"), best["AP50"], best["AP"], result["train_seconds"],
                     run_dir)
    return result


def _sync_bn(model: Detector, device: torch.device, *, enabled: bool) -> Detector:
    """``train.sync_bn`` under torchrun: SyncBatchNorm on CUDA (torch has none for the CPU)."""
    if not enabled:
        return model
    if device.type == "cuda":
        return torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    log.warning("train.sync_bn needs CUDA (torch's SyncBatchNorm); on the CPU each process keeps its own "
                "BatchNorm statistics")
    return model


def _hooks(cfg: DictConfig, model: Detector, train_loader: Any, val_loader: Any, run_dir: Path,
           config_dict: dict[str, Any], *, main: bool, progress: bool,
           extra_hooks: Sequence[HookBase]) -> list[HookBase]:
    """Every hook of the run; the Trainer orders them by ``priority`` (``facedet.engine.hook_base``)."""
    t = cfg.train
    hooks: list[HookBase] = []
    if t.ema.enabled:
        hooks.append(EMAHook(ModelEMA(model, decay=t.ema.decay, tau=t.ema.tau)))
    spec = build_eval_spec(cfg.get("eval"), val_loader.dataset.records, interval=int(t.eval_interval),
                           best_metric=str(t.best_metric))
    settings = eval_settings(img_size=cfg.data.img_size, postprocess=cfg.model.postprocess, data_name=cfg.data.name)
    return hooks + [
        build_eval_hook(spec, val_loader, run_dir=run_dir, settings=settings, progress=progress),
        PredictionGridHook(val_loader.dataset, num_images=int(t.get("vis_images", 8))),
        *model_hooks(model),  # schedules of model options (DropBlock)
        *build_data_hooks(cfg.aug, train_dataset=train_loader.dataset, img_size=int(cfg.data.img_size),
                          seed=int(cfg.seed), tensorboard=bool(t.get("tensorboard", False))),
        *extra_hooks,
        CheckpointHook(run_dir / "checkpoints", config=config_dict, interval_steps=int(t.get("save_interval", 0))),
        LoggingHook(run_dir / "tb" if (t.tensorboard and main) else None, log_interval=t.log_interval,
                    progress=progress),
    ]


def _result(cfg: DictConfig, trainer: Trainer, world: du.DistInfo, resumed: Path | None,
            started: float) -> dict[str, Any]:
    """What ``metrics.json`` holds; under DDP also whether the ranks ended with identical weights."""
    result = {
        "best": trainer.best_metrics or trainer.metrics,
        "final": trainer.metrics,
        "history": next(h.history for h in trainer.hooks if isinstance(h, EvalHook)),
        "best_metric": cfg.train.best_metric,
        "train_seconds": round(time.perf_counter() - started, 1),
        "device": str(trainer.device),
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "parameters": count_parameters(trainer.model),
        "interrupted": trainer.interrupted,
        "resumed_from": str(resumed) if resumed else None,
        "epochs_done": trainer.epoch + int(trainer.epoch_done),
        "steps": trainer.step,
        "optimizer_steps": trainer.optimizer_steps,
        "skipped_steps": trainer.skipped_steps,
        "amp_overflow_steps": trainer.amp_overflow_steps,
        "accumulate": trainer.accumulate,
        "world_size": world.world_size,
    }
    if world.enabled:  # did the ranks stay bit-identical? (they must: DDP averages the same gradients)
        ema = next((h.ema.module for h in trainer.hooks if isinstance(h, EMAHook)), None)
        digest = du.state_digest(trainer.model.state_dict()) + (du.state_digest(ema.state_dict()) if ema else "")
        digests = du.all_gather_objects(digest)
        result["ddp"] = {"backend": world.backend, "weight_digests": digests, "identical": len(set(digests)) == 1}
        if len(set(digests)) != 1:
            log.warning("the weights differ between ranks at the end of training: %s", digests)
    return result
