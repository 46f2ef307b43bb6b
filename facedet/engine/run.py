"""Turn a composed config into a training run: build data, model, optimizer and hooks, train, and
write the run directory. ``run_training`` is what ``tools/train.py`` calls inside Hydra, and what
tests call with a config from Hydra's compose API."""

from __future__ import annotations

import contextlib
import logging
import math
import os
import shutil
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from facedet.anchors import check_training_anchors
from facedet.builders import build_loaders, eval_settings, seed_everything, select_device
from facedet.checkpoint import CheckpointError, load_checkpoint, remove_stale_temps, require_training_checkpoint
from facedet.config_check import validate_train_config
from facedet.engine import distributed as du
from facedet.engine.data_hooks import build_data_hooks
from facedet.engine.ema import ModelEMA
from facedet.engine.eval_hook import build_eval_hook
from facedet.engine.hooks import CheckpointHook, EMAHook, EvalHook, LoggingHook, count_parameters
from facedet.engine.model_hooks import model_hooks
from facedet.engine.optim import WarmupCosine, build_optimizer
from facedet.engine.prediction_grid import PredictionGridHook
from facedet.engine.resume import EVAL_DEFINING, find_resume_checkpoint, incompatible
from facedet.engine.trainer import HookBase, Trainer
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
    rank 0 writes there. ``extra_hooks`` run before the checkpoint and logging hooks.
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
    with du.main_process_first():  # rank 0 renders/caches data first
        train_loader, val_loader = build_loaders(cfg, rank=world.rank, world_size=world.world_size)
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
        check_training_anchors(cfg, train_loader.dataset, model)  # logs the fit; warns below BPR 0.98, saying why
    if t.get("sync_bn", False) and world.enabled:
        if device.type == "cuda":
            model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        else:
            log.warning("train.sync_bn needs CUDA (torch's SyncBatchNorm); on the CPU each process keeps its own "
                        "BatchNorm statistics")

    o, s, nominal = cfg.optim, cfg.schedule, int(t.get("nominal_batch_size", 0))
    accumulate, wd_scale = accumulation(int(t.batch_size), nominal)
    if accumulate > 1 or wd_scale != 1.0:
        log.info("gradient accumulation: %d batches of %d per optimizer step (nominal batch %d); weight decay "
                 "x %.3g", accumulate, t.batch_size, nominal, wd_scale)
    optimizer = build_optimizer(model, name=o.name, lr=o.lr, momentum=o.momentum, nesterov=o.nesterov,
                                weight_decay=o.weight_decay * wd_scale)
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
        PredictionGridHook(val_loader.dataset, num_images=int(t.get("vis_images", 8))),
        *model_hooks(model),  # schedules of model options (DropBlock)
        *build_data_hooks(cfg, train_loader),  # close-mosaic, multi-scale, SAT, sample grid (aug config)
        *extra_hooks,
        # checkpoint and logging stay last: a checkpoint captures the random states at its place in this list
        CheckpointHook(run_dir / "checkpoints", config=config_dict, interval_steps=int(t.get("save_interval", 0))),
        LoggingHook(run_dir / "tb" if (t.tensorboard and main) else None, log_interval=t.log_interval,
                    progress=progress),
    ]
    trainer = Trainer(model=model, optimizer=optimizer, train_loader=train_loader, device=device,
                      max_epochs=t.epochs, base_lr=o.lr, lr_factor=lr_factor, hooks=hooks, amp=t.amp,
                      grad_clip=t.grad_clip, accumulate=accumulate, nan_patience=int(t.get("nan_patience", 10)),
                      find_unused_parameters=bool(t.get("ddp_find_unused", False)))
    if world.rank > 0:
        seed_everything(int(cfg.seed) + world.rank)  # same weights everywhere, different random draws per rank
    resumed = _resume(trainer, cfg, config_dict, run_dir, lr_factor)
    trainer.train()

    best = getattr(trainer, "best_metrics", None) or trainer.metrics
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
        "interrupted": trainer.interrupted,
        "resumed_from": str(resumed) if resumed else None,
        "epochs_done": trainer.epoch + int(trainer.epoch_done),
        "steps": trainer.step,
        "optimizer_steps": trainer.optimizer_steps,
        "skipped_steps": trainer.skipped_steps,
        "amp_overflow_steps": trainer.amp_overflow_steps,
        "accumulate": accumulate,
        "world_size": world.world_size,
    }
    if world.enabled:  # did the ranks stay bit-identical? (they must: DDP averages the same gradients)
        ema = next((h.ema.module for h in hooks if isinstance(h, EMAHook)), None)
        digest = du.state_digest(model.state_dict()) + (du.state_digest(ema.state_dict()) if ema else "")
        digests = du.all_gather_objects(digest)
        result["ddp"] = {"backend": world.backend, "weight_digests": digests, "identical": len(set(digests)) == 1}
        if len(set(digests)) != 1:
            log.warning("the weights differ between ranks at the end of training: %s", digests)
    if main:
        (run_dir / "metrics.json").write_text(to_json(result, indent=2))  # NaN -> null
        if "AP50" in best:
            log.info("best %s %.4f (epoch %s) | AP50 %.4f AP50:95 %.4f | %.0f s | run dir %s", t.best_metric,
                     best[t.best_metric], best.get("epoch"), best["AP50"], best["AP"], result["train_seconds"],
                     run_dir)
    return result


def _in_multirun() -> bool:
    """Inside a Hydra ``-m`` sweep: its jobs are siblings that must never resume each other."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def _resume(trainer: Trainer, cfg: DictConfig, config: dict[str, Any], run_dir: Path, lr_factor: Any) -> Path | None:
    """Load the checkpoint ``train.resume`` names into ``trainer``; returns its path (None: fresh run).
    ``true``/``auto`` take only this run's own checkpoint, or an earlier run's of the same name
    (``runs/<name>/*``, not inside a sweep) with a config that differs in resume-compatible keys only."""
    main = du.is_main_process()
    if main:
        remove_stale_temps(run_dir / "checkpoints")  # a save killed mid-write left them; this run writes here
    name = None if _in_multirun() else str(cfg.name)
    found = find_resume_checkpoint(cfg.train.get("resume", False), run_dir, name=name, config=config) if main else None
    path = du.broadcast_object(found)
    if path is None:
        return None
    ckpt = load_checkpoint(path, map_location="cpu")
    require_training_checkpoint(ckpt, path, needs=("model", "optimizer"), use="train.resume")
    diffs = incompatible(ckpt.get("config") or {}, config)
    if diffs:
        log.warning("resuming %s with a different config, so the run will not continue exactly as it would "
                    "have: %s", path, "; ".join(diffs))
    try:
        trainer.load_state_dict(ckpt, source=str(path))
    except CheckpointError as e:  # name the config keys behind a weights mismatch
        model_diffs = [d for d in diffs if d.startswith("model.") and not d.startswith("model.postprocess.")]
        if not model_diffs:
            raise
        raise CheckpointError(f"{path} was trained with another model config ({'; '.join(model_diffs[:6])}): "
                              f"{e}") from None
    fresh_best = _reset_best_if_not_comparable(trainer, path, [d for d in diffs if d.startswith(EVAL_DEFINING)])
    old = ckpt.get("config") or {}
    old_epochs = (old.get("train") or {}).get("epochs", trainer.max_epochs)
    if old_epochs != trainer.max_epochs:
        old_total = int(ckpt.get("steps_per_epoch", trainer.steps_per_epoch)) * int(old_epochs)
        old_factor = WarmupCosine(total_steps=old_total, warmup_steps=lr_factor.warmup_steps,
                                  final_ratio=lr_factor.final_ratio, warmup_start=lr_factor.warmup_start)
        log.info("train.epochs changed %s -> %s: the cosine schedule is recomputed over %d steps, so the learning "
                 "rate factor at step %d goes %.4g -> %.4g", old_epochs, trainer.max_epochs, lr_factor.total_steps,
                 trainer.step, old_factor(trainer.step), lr_factor(trainer.step))
    if trainer.start_epoch >= trainer.max_epochs:
        log.warning("%s has already done %d epochs and train.epochs=%d: nothing left to train (raise train.epochs "
                    "to continue)", path, trainer.start_epoch, trainer.max_epochs)
    where = (f"epoch {trainer.start_epoch + 1}, batch {trainer.start_iter}" if trainer.start_iter
             else f"the start of epoch {trainer.start_epoch + 1}")
    log.info("resumed from %s (step %d): continuing at %s of %d", path, trainer.step, where, trainer.max_epochs)
    source_run = Path(path).absolute().parent.parent
    if main and source_run != run_dir and not fresh_best:  # keep the new run folder complete
        for rel in ("checkpoints/best.pt", "predictions.json"):
            if (source_run / rel).is_file() and not (run_dir / rel).exists():
                (run_dir / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source_run / rel, run_dir / rel)
    return Path(path)


def _reset_best_if_not_comparable(trainer: Trainer, path: Path, eval_diffs: list[str]) -> bool:
    """A checkpoint evaluated on other data or with other evaluation settings: its best metric and
    history say nothing about this run, so forget them (and say why). Returns whether it did."""
    if not eval_diffs:
        return False
    if math.isfinite(trainer.best_metric) or trainer.metrics:
        log.warning("%s was evaluated on other data or with other evaluation settings (%s): its best metric %.4f "
                    "does not apply here, so the best, the metrics and the evaluation history start afresh", path,
                    "; ".join(eval_diffs[:4]) + (f" (+{len(eval_diffs) - 4} more)" if len(eval_diffs) > 4 else ""),
                    trainer.best_metric)
    trainer.best_metric, trainer.metrics = float("-inf"), {}
    trainer.best_metrics = None
    for hook in trainer.hooks:
        if isinstance(hook, EvalHook):
            hook.history = []
    return True
