"""Every random generator a training process draws from, captured into plain values and restored.

The states go into checkpoints read with ``torch.load(weights_only=True)``, so they hold only
tensors, numbers, strings and tuples: numpy's key array travels as an int64 tensor.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch


def capture_rng(device: torch.device | None = None) -> dict[str, Any]:
    """Python, numpy, torch (CPU) and, on a CUDA ``device``, that device's generator state."""
    name, keys, pos, has_gauss, gauss = np.random.get_state(legacy=True)
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "gauss": float(gauss)},
        "torch": torch.get_rng_state(),
    }
    if device is not None and device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def restore_rng(states: Sequence[dict[str, Any]] | dict[str, Any], rank: int = 0,
                device: torch.device | None = None) -> None:
    """Restore ``capture_rng`` output; with a list (one per rank) this rank's (``rank % len``)."""
    state = states[rank % len(states)] if isinstance(states, Sequence) else states
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    n = state["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and device is not None and device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda"], device)
