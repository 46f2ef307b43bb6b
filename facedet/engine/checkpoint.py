"""Checkpoints: written atomically, loaded safely.

A checkpoint is a dict of tensors and plain values (model / EMA / optimizer state, epoch, step,
the resolved config as a dict, metrics), so ``torch.load(weights_only=True)`` can read it and a
checkpoint that would run code when unpickled is refused.
"""

from __future__ import annotations

import os
import pickle
import tempfile
from pathlib import Path
from typing import Any

import torch


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used: missing, unsafe, or for another model."""


def save_checkpoint(state: dict[str, Any], path: str | Path) -> None:
    """Write ``state`` to ``path`` atomically: temporary file in the same folder, flush, fsync,
    rename. A crash mid-write leaves the previous checkpoint intact."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    try:  # make the rename itself durable
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:
        pass


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True``; unsafe or unreadable files raise CheckpointError."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"Checkpoint not found: {path}")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        raise CheckpointError(
            f"Refusing to load {path}: it holds objects other than tensors and plain values, and "
            f"unpickling it could run code. Only load checkpoints you trust. ({str(e).splitlines()[0]})"
        ) from e
    except (RuntimeError, EOFError, OSError) as e:
        raise CheckpointError(f"Could not read checkpoint {path}: {e}") from e


def load_model_state(model: torch.nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Load a state dict strictly; a checkpoint of another model config fails listing the keys."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    mismatched = [
        f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}"
        for k, v in own.items()
        if k in state and state[k].shape != v.shape
    ]
    if missing or unexpected or mismatched:

        def show(xs: list[str]) -> str:
            return ", ".join(xs[:8]) + (f" ... (+{len(xs) - 8} more)" if len(xs) > 8 else "")

        parts = [
            f"{name} ({len(xs)}): {show(xs)}"
            for name, xs in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", mismatched))
            if xs
        ]
        raise CheckpointError(
            f"{source} does not fit this model config: " + "; ".join(parts)
            + ". Was it trained with another model config?"
        )
    model.load_state_dict(state)


def model_weights(ckpt: dict[str, Any], *, use_ema: bool = True) -> tuple[str, dict[str, torch.Tensor]]:
    """The weights to evaluate from a training checkpoint: the EMA ones when present and wanted
    (they are what training evaluated), else the raw model's. Returns (which, state dict)."""
    ema = ckpt.get("hooks", {}).get("EMAHook")
    if use_ema and ema:
        return "ema", ema["module"]
    if "model" not in ckpt:
        raise CheckpointError("The checkpoint holds no 'model' weights; is it a facedet training checkpoint?")
    return "model", ckpt["model"]


def find_resume_checkpoint(resume: Any, run_dir: str | Path) -> Path | None:
    """The checkpoint ``train.resume`` names: ``false``/``null`` -> None; a path -> that file;
    ``true`` -> the newest ``checkpoints/last.pt`` of this run directory or of its siblings (earlier
    runs of the same name: ``runs/<name>/*``), an error if there is none; ``auto`` -> the same, or
    None to start afresh (for schedulers that requeue the same command)."""
    if resume is None or resume is False or str(resume).lower() in ("false", "none", "null", ""):
        return None
    if resume is True or str(resume).lower() in ("true", "auto"):
        run_dir = Path(run_dir).absolute()
        own = run_dir / "checkpoints" / "last.pt"
        found = [own] if own.is_file() else sorted(
            run_dir.parent.glob("*/checkpoints/last.pt"), key=lambda p: p.stat().st_mtime)
        if found:
            return found[-1]
        if str(resume).lower() == "auto":
            return None
        raise CheckpointError(
            f"train.resume=true but there is no checkpoints/last.pt in {run_dir} or beside it in {run_dir.parent}; "
            "give the path: train.resume=runs/<name>/<time>/checkpoints/last.pt"
        )
    path = Path(str(resume)).expanduser()
    if not path.is_file():
        raise CheckpointError(f"train.resume: checkpoint not found: {path.absolute()}")
    return path


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
