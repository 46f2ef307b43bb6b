"""Resuming a run: which checkpoint it continues (only its own, or an earlier run's of the same name
whose config differs in resume-compatible keys only, ``RESUME_COMPATIBLE``) and loading it into
the trainer (``resume_trainer``). Configs stored by older versions are compared in today's layout
(``facedet.config_check.upgrade_config``)."""

from __future__ import annotations

import logging
import math
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig

from facedet.checkpoint import CheckpointError, load_checkpoint, remove_stale_temps, require_training_checkpoint
from facedet.config_check import added_as_before, upgrade_config
from facedet.engine import distributed as du
from facedet.engine.eval_hook import EvalHook
from facedet.engine.optim import build_schedule

if TYPE_CHECKING:
    from facedet.engine.trainer import Trainer

log = logging.getLogger(__name__)

# Config keys whose change on resume does not alter what is computed (data order and augmentation
# do not depend on the number of workers: see facedet/data/loader.py); train.resume=true/auto
# picks only checkpoints whose config differs in nothing else.
RESUME_COMPATIBLE = ("train.resume", "train.epochs", "train.num_workers", "train.threads", "train.log_interval",
                     "train.tensorboard", "train.vis_images", "train.save_interval", "train.nan_patience",
                     "eval.batch_size")
# What an evaluation's numbers depend on: when these differ on resume, the old best is not comparable.
EVAL_DEFINING = ("data.", "eval.", "model.postprocess.", "train.best_metric")


def incompatible(old: dict[str, Any], new: dict[str, Any], allowed: Sequence[str] = RESUME_COMPATIBLE) -> list[str]:
    """The config differences (``key: old -> new``) that make a checkpoint of ``old`` not a
    continuation of a run of ``new``; ``old`` is first brought to today's layout (``upgrade_config``)."""
    return [d for d in config_differences(upgrade_config(old), new) if not d.startswith(tuple(allowed))]


def _resume_candidates(run_dir: Path, name: str | None) -> list[Path]:
    """This run's own last.pt; without one, those of earlier runs of the same name, newest first:
    only when ``run_dir`` is in the default layout ``runs/<name>/<time>``."""
    own = run_dir / "checkpoints" / "last.pt"
    if own.is_file():
        return [own]
    if name is None or run_dir.parent.name != name:
        return []
    return sorted(run_dir.parent.glob("*/checkpoints/last.pt"), key=lambda p: p.stat().st_mtime, reverse=True)


def find_resume_checkpoint(resume: Any, run_dir: str | Path, *, name: str | None = None,
                           config: dict[str, Any] | None = None) -> Path | None:
    """The checkpoint ``train.resume`` names: ``false``/``null`` -> None; a path -> that file;
    ``true`` -> this run directory's ``checkpoints/last.pt``, or when it has none and ``run_dir``
    is ``runs/<name>/<time>``, the newest ``runs/<name>/*/checkpoints/last.pt``; an error if there is
    none. ``auto`` -> the same, or None to start afresh (for schedulers that requeue the same
    command). With ``config`` (the resolved config of this run), a found checkpoint whose config
    differs in more than ``RESUME_COMPATIBLE`` keys is passed over, and the log says why."""
    if resume is None or resume is False or str(resume).lower() in ("false", "none", "null", ""):
        return None
    if not (resume is True or str(resume).lower() in ("true", "auto")):
        path = Path(str(resume)).expanduser()
        if not path.is_file():
            raise CheckpointError(f"train.resume: checkpoint not found: {path.absolute()}")
        return path
    run_dir, mode = Path(run_dir).absolute(), str(resume).lower()
    rejected = []
    for path in _resume_candidates(run_dir, name):
        try:
            ckpt = load_checkpoint(path, mmap=True)  # only the config is read here
        except CheckpointError as e:
            rejected.append(str(e))
            continue
        if not isinstance(ckpt, dict) or not isinstance(ckpt.get("config"), dict):
            rejected.append(f"{path} holds no config: not a facedet training checkpoint")
            continue
        diffs = incompatible(ckpt["config"], config) if config is not None else []
        if not diffs:
            log.info("train.resume=%s: resuming %s", mode, path)
            return path
        shown = "; ".join(d if len(d) < 120 else d[:117] + "..." for d in diffs[:4])
        more = f" (+{len(diffs) - 4} more)" if len(diffs) > 4 else ""
        rejected.append(f"{path} has another config: {shown}{more}")
    where = (f"{run_dir}/checkpoints" + (f" or runs of the same name in {run_dir.parent}"
                                         if name is not None and run_dir.parent.name == name else ""))
    why = f" ({' | '.join(rejected)})" if rejected else ""
    if mode == "auto":
        if rejected:
            own = run_dir / "checkpoints" / "last.pt"
            log.warning("train.resume=auto: no checkpoint of this run to continue in %s%s; starting afresh%s",
                        where, why, f" ({own} will be overwritten)" if own.is_file() else "")
        else:
            log.info("train.resume=auto: no checkpoint in %s; starting afresh", where)
        return None
    raise CheckpointError(
        f"train.resume=true but there is no checkpoints/last.pt of this run in {where}{why}; "
        "give the path: train.resume=runs/<name>/<time>/checkpoints/last.pt"
    )


def config_differences(old: Any, new: Any, prefix: str = "") -> list[str]:
    """``key: old -> new`` lines for the leaves where two plain config dicts differ; a key absent from
    ``old`` (an older version's config) whose value in ``new`` is off (``config_check.ADDED_KEYS``)
    is no difference."""
    if isinstance(old, dict) and isinstance(new, dict):
        out: list[str] = []
        for k in sorted(set(old) | set(new), key=str):
            key = f"{prefix}.{k}" if prefix else str(k)
            if k not in old and k in new and added_as_before(key, new[k]):
                continue  # a key added since, left off: the older run computed the same
            if k not in old or k not in new:
                out.append(f"{key}: {old.get(k, '<absent>')!r} -> {new.get(k, '<absent>')!r}")
            else:
                out += config_differences(old[k], new[k], key)
        return out
    return [] if old == new else [f"{prefix}: {old!r} -> {new!r}"]


def _in_multirun() -> bool:
    """Inside a Hydra ``-m`` sweep: its jobs are siblings that must never resume each other."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def resume_trainer(trainer: Trainer, cfg: DictConfig, config: dict[str, Any], run_dir: Path) -> Path | None:
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
    _log_schedule_change(trainer, cfg, ckpt)
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


def _log_schedule_change(trainer: Trainer, cfg: DictConfig, ckpt: dict[str, Any]) -> None:
    """Say how the learning rate moves when ``train.epochs`` changed on resume (the schedule spans the run)."""
    old_epochs = ((ckpt.get("config") or {}).get("train") or {}).get("epochs", trainer.max_epochs)
    if old_epochs == trainer.max_epochs:
        return
    old_spe = int(ckpt.get("steps_per_epoch", trainer.steps_per_epoch))
    old_factor = build_schedule(cfg.schedule, steps_per_epoch=old_spe, epochs=int(old_epochs))
    log.info("train.epochs changed %s -> %s: the learning-rate schedule is recomputed over %d steps, so the "
             "learning rate factor at step %d goes %.4g -> %.4g", old_epochs, trainer.max_epochs,
             trainer.steps_per_epoch * trainer.max_epochs, trainer.step, old_factor(trainer.step),
             trainer.lr_factor(trainer.step))


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
