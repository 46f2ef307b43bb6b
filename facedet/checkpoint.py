"""Checkpoint files: written atomically, loaded safely, checked against the model they are loaded into.

A checkpoint is a dict of tensors and plain values (model / EMA / optimizer state, epoch, step,
the resolved config as a dict, metrics), so ``torch.load(weights_only=True)`` can read it and a
checkpoint that would run code when unpickled is refused. Files that are not checkpoints at all
(a git-LFS pointer, an HTML error page, a truncated download, a state dict given to
``train.resume``) are named for what they are.
"""

from __future__ import annotations

import logging
import os
import pickle
import re
import tempfile
import warnings
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

import torch

log = logging.getLogger(__name__)


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used: missing, unsafe, not a checkpoint, or for another model."""


def _temp_glob(name: str) -> str:
    return f".{name}.*.tmp"


def _write(state: dict[str, Any], f: IO[bytes]) -> None:
    """The serialisation step of ``save_checkpoint`` (tests and bench/reliability_checkpoints.py
    replace it to simulate a full disk or a kill in the middle of a write)."""
    torch.save(state, f)


def save_checkpoint(state: dict[str, Any], path: str | Path) -> None:
    """Write ``state`` to ``path`` atomically: temporary file in the same folder, flush, fsync,
    rename. A crash or a full disk mid-write leaves the previous checkpoint intact; an OSError
    (ENOSPC, EIO, ...) becomes a CheckpointError that says so."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            _write(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        Path(tmp).unlink(missing_ok=True)
        kept = f"the previous {path.name} is intact" if path.is_file() else f"no {path.name} was written"
        raise CheckpointError(f"Could not write checkpoint {path}: {e.strerror or e}; {kept}.") from e
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


def remove_stale_temps(ckpt_dir: str | Path) -> list[Path]:
    """Delete the temporary files a save killed mid-write (SIGKILL, power loss) left in
    ``ckpt_dir``; returns them. Call it before this run writes there."""
    removed = []
    for p in sorted(Path(ckpt_dir).glob(_temp_glob("*.pt"))):
        p.unlink(missing_ok=True)
        removed.append(p)
    if removed:
        log.info("removed %d temporary file(s) of a checkpoint write that did not finish (killed mid-save): %s",
                 len(removed), ", ".join(p.name for p in removed))
    return removed


def _looks_like_text(head: bytes) -> bool:
    text = head.decode("utf-8", errors="replace")
    text = text[:-1] if text.endswith("\ufffd") else text  # the 512-byte cut may split a character
    return bool(text.strip()) and all(c.isprintable() or c in "\r\n\t" for c in text)


def describe_non_binary(head: bytes, size: int) -> str | None:
    """What a weights file is when its first bytes show it is no binary weights at all: empty, a
    git-LFS pointer, an HTML page, text. None otherwise."""
    if size == 0:
        return "empty file"
    if head.startswith(b"version https://git-lfs"):
        return "a git-LFS pointer, not a checkpoint (fetch the file itself: git lfs pull)"
    start = head.lstrip()[:512].lower()
    if start.startswith((b"<!doctype html", b"<html")) or b"<html" in start:
        return "an HTML page, not a checkpoint (a download that saved an error or login page?)"
    if _looks_like_text(head):
        first = head.decode("utf-8", errors="replace").strip().splitlines()[0][:40]
        return f"a text file, not a checkpoint (it starts {first!r})"
    return None


def describe_non_checkpoint(path: Path) -> str | None:
    """Why ``path`` is certainly not a PyTorch file, from its first bytes; None when it may be one."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(512)
    if head.startswith(b"PK\x03\x04"):  # torch's zip format: a cut file has no central directory
        return None if zipfile.is_zipfile(path) else "truncated zip (incomplete download or write)"
    if head[:1] == b"\x80":  # a pickle: torch's legacy format, or another pickle (refused when loading)
        return None
    return describe_non_binary(head, size) or "not a PyTorch file (random bytes?)"


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu", *, mmap: bool = False) -> Any:
    """Load a PyTorch file with ``weights_only=True``. A file that is not one, is cut short, or
    whose pickle would run code raises CheckpointError naming the file and what it is. ``mmap``
    maps the tensors instead of reading them (cheap when only the config is wanted)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"Checkpoint not found: {path}")
    what = describe_non_checkpoint(path)
    if what:
        raise CheckpointError(f"Cannot load {path}: {what}")
    try:
        with warnings.catch_warnings():  # torch's note on pickle protocols says nothing to a user here
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            return torch.load(path, map_location=map_location, weights_only=True,
                              mmap=mmap and zipfile.is_zipfile(path))  # torch maps only its zip format
    except pickle.UnpicklingError as e:
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(e))
        if found:
            raise CheckpointError(
                f"Refusing to load {path}: it holds objects other than tensors and plain values ({found[1]}), and "
                "unpickling it could run code. Only load checkpoints you trust."
            ) from e
        raise CheckpointError(f"Cannot load {path}: a pickle that is not a PyTorch checkpoint") from e
    except EOFError as e:
        raise CheckpointError(f"Cannot load {path}: truncated (incomplete download or write)") from e
    except Exception as e:  # torch raises RuntimeError, KeyError, ValueError ... on damaged files
        first = (str(e).splitlines() or [""])[0]
        raise CheckpointError(f"Cannot load {path}: damaged or not a PyTorch file ({type(e).__name__}: {first})") from e


def is_state_dict(obj: Any) -> bool:
    """A bare ``{name: tensor}`` mapping (or one under ``state_dict``): weights without a training state."""
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    return isinstance(obj, dict) and bool(obj) and all(torch.is_tensor(v) for v in obj.values())


def require_training_checkpoint(ckpt: Any, path: str | Path, *, needs: Sequence[str], use: str) -> None:
    """CheckpointError unless ``ckpt`` is a facedet training checkpoint holding the keys ``needs``
    (``use`` says what for: ``train.resume``, ``checkpoint=``)."""
    if isinstance(ckpt, dict) and all(k in ckpt for k in needs):
        return
    if is_state_dict(ckpt):
        raise CheckpointError(
            f"{path} is a state dict (weights only: no training state or config), not a training checkpoint, so "
            f"{use} cannot use it: use model.weights={path} to train from these weights.")
    keys = ", ".join(map(str, list(ckpt)[:8])) if isinstance(ckpt, dict) else type(ckpt).__name__
    raise CheckpointError(f"{path} is not a facedet training checkpoint ({use} needs {', '.join(needs)}; "
                          f"it holds {keys or 'nothing'}).")


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


# A checkpoint's ``hooks`` holds each hook's state under its ``state_key`` ("ema", "eval", "sat", ...);
# checkpoints written before those keys existed used the hook's class name ("EMAHook", ...).
EMA_STATE_KEY = "ema"
LEGACY_EMA_STATE_KEY = "EMAHook"


def hook_state(ckpt: dict[str, Any], key: str, *, legacy: str = "") -> dict[str, Any] | None:
    """The state saved for the hook ``key`` (or, in an older checkpoint, under ``legacy``); None when absent."""
    hooks = ckpt.get("hooks") or {}
    if key in hooks:
        return hooks[key]
    return hooks.get(legacy) if legacy else None


def model_weights(ckpt: dict[str, Any], *, use_ema: bool = True) -> tuple[str, dict[str, torch.Tensor]]:
    """The weights to evaluate from a training checkpoint: the EMA ones when present and wanted
    (they are what training evaluated), else the raw model's. Returns (which, state dict)."""
    ema = hook_state(ckpt, EMA_STATE_KEY, legacy=LEGACY_EMA_STATE_KEY)
    if use_ema and ema:
        return "ema", ema["module"]
    if "model" not in ckpt:
        raise CheckpointError("The checkpoint holds no 'model' weights; is it a facedet training checkpoint?")
    return "model", ckpt["model"]
