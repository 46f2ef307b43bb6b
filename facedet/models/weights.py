"""Start a model from a user's local weights file, with a report of what was loaded.

Two kinds of file (chosen by the name):
- a PyTorch file (``.pt``, ``.pth``, ...): a plain state dict, a ``{"state_dict": ...}`` or
  ``{"model": ...}`` wrapper, or a facedet training checkpoint (its EMA weights, as evaluation
  uses). Read with ``torch.load(weights_only=True)``: a file that would run code is refused.
- Darknet ``.weights`` and ``*.conv.N`` (``darknet53.conv.74``, ``yolov4.conv.137``, full files):
  ``facedet.models.darknet_weights``.

A file that is no weights at all (empty, a git-LFS pointer, an HTML page, text, random bytes, a
truncated download) is refused saying what it is (``facedet.checkpoint.load_checkpoint``).

Keys are matched by name and shape. Without ``partial`` any missing, unexpected or
shape-mismatched key is an error listing them; with ``partial`` the matching ones load and the
report lists the rest. A backbone-only state dict (a torchvision MobileNet's, a CSPDarknet's) loads
into ``backbone.`` when none of its keys match the detector as they are; the report says so.
"""

from __future__ import annotations

import re
from pathlib import Path

from torch import Tensor, nn

from facedet.checkpoint import CheckpointError, load_checkpoint, model_weights
from facedet.models.darknet_weights import load_darknet_weights
from facedet.models.load_report import LoadReport, compare_state

__all__ = ["LoadReport", "compare_state", "load_state_dict_file", "load_weights"]


def _state_from_file(obj: object, path: Path) -> tuple[dict[str, Tensor], str]:
    """The state dict inside what ``torch.load`` returned (see the module docstring), and where it was."""
    if isinstance(obj, dict) and "hooks" in obj and "model" in obj:  # a facedet training checkpoint
        which, state = model_weights(obj)
        return state, f"the {which} weights of a facedet checkpoint"
    where = "a state dict"
    for key in ("state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj, where = obj[key], f"the state dict under '{key}'"
            break
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, Tensor) for v in obj.values()):
        raise CheckpointError(
            f"{path} holds no state dict (a mapping of names to tensors, or one under 'state_dict' / 'model')."
        )
    return obj, where


def load_state_dict_file(model: nn.Module, path: str | Path, *, partial: bool = False) -> LoadReport:
    """Load a PyTorch weights file into ``model``; returns the report. Raises ``CheckpointError``
    when nothing matches, or (without ``partial``) when anything does not."""
    path = Path(path)
    state, where = _state_from_file(load_checkpoint(path), path)
    own = model.state_dict()
    report = compare_state(own, state, f"{path} ({where})")
    if not report.matched and hasattr(model, "backbone"):
        prefixed = {f"backbone.{k}": v for k, v in state.items()}
        as_backbone = compare_state(own, prefixed, report.source)
        if as_backbone.matched:
            report, state = as_backbone, prefixed
            report.notes.append(
                "no key matched the detector as it is: matched as backbone weights ('backbone.' prefix)"
            )
    if not report.matched:
        raise CheckpointError(f"{path}: no weight matches this model by name and shape. " + report.summary())
    if not partial and (report.missing or report.unexpected or report.mismatched):
        raise CheckpointError(
            report.summary() + ". Set model.weights_partial=true to load only the matching weights."
        )
    model.load_state_dict({k: state[k] for k in report.matched}, strict=False)
    return report


def load_weights(model: nn.Module, path: str | Path, *, partial: bool = False) -> LoadReport:
    """Load ``path`` into ``model``: Darknet ``.weights`` files by layout, anything else as a
    PyTorch state dict. Raises ``FileNotFoundError`` or ``CheckpointError`` with the reason."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"model.weights: no such file: {path}")
    if path.suffix == ".weights" or re.search(r"\.conv\.\d+$", path.name):  # also darknet53.conv.74, yolov4.conv.137
        return load_darknet_weights(model, path)
    return load_state_dict_file(model, path, partial=partial)
