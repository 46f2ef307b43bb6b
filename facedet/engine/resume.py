"""Which checkpoint a run resumes: only its own, or an earlier run's of the same name whose config
differs in resume-compatible keys only (``RESUME_COMPATIBLE``)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from facedet.checkpoint import CheckpointError, load_checkpoint

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
    continuation of a run of ``new``."""
    return [d for d in config_differences(old, new) if not d.startswith(tuple(allowed))]


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
    """``key: old -> new`` lines for the leaves where two plain config dicts differ."""
    if isinstance(old, dict) and isinstance(new, dict):
        out: list[str] = []
        for k in sorted(set(old) | set(new), key=str):
            key = f"{prefix}.{k}" if prefix else str(k)
            if k not in old or k not in new:
                out.append(f"{key}: {old.get(k, '<absent>')!r} -> {new.get(k, '<absent>')!r}")
            else:
                out += config_differences(old[k], new[k], key)
        return out
    return [] if old == new else [f"{prefix}: {old!r} -> {new!r}"]
