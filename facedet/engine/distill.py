"""Distillation for a training run: load the teacher named by the ``distill`` config node and wrap
the student's loss with a ``DISTILL_LOSSES`` entry (``facedet.losses.distill``).

The teacher is a checkpoint written by facedet training (``best.pt`` / ``last.pt``): its stored
config rebuilds the model, as ``tools/eval.py`` does (``facedet.inference.load_detector``), so any
model facedet trains can teach, as long as its strides and anchors per level are the student's
(anchor sizes may differ). Off (``teacher: null``, the default), nothing is loaded or changed.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from facedet.checkpoint import CheckpointError
from facedet.inference import load_detector
from facedet.models import Detector
from facedet.registry import DISTILL_LOSSES, ConfigError, build

log = logging.getLogger(__name__)

# keys of the ``distill`` node read here; the others (``type`` and the loss's own) go to the loss
_RUN_KEYS = ("teacher", "use_ema")


def _plain(node: Mapping[str, Any] | DictConfig | None) -> dict[str, Any]:
    if node is None:
        return {}
    if isinstance(node, DictConfig):
        return dict(OmegaConf.to_container(node, resolve=True))  # type: ignore[arg-type]
    if not isinstance(node, Mapping):
        raise ConfigError(f"'distill' must be a mapping (teacher, use_ema, type, ...), got {node!r}")
    return dict(node)


def load_teacher(path: str | Path, *, device: torch.device | str = "cpu", use_ema: bool = True) -> Detector:
    """The teacher in eval mode, frozen (no parameter requires a gradient), on ``device``. A file that is
    not a facedet training checkpoint is a ConfigError naming ``distill.teacher`` and the file."""
    try:
        teacher, _, which = load_detector(path, use_ema=use_ema, device=device)
    except CheckpointError as e:
        raise ConfigError(f"distill.teacher={path}: {e}") from None
    for p in teacher.parameters():
        p.requires_grad_(False)
    log.info("distillation: teacher %s (%s weights, strides %s)", path, which, teacher.strides)
    return teacher  # type: ignore[return-value]


def _layout(model: Detector) -> list[tuple[int, int]]:
    return [(int(stride), int(model.anchors.shape[1])) for stride in model.strides]


def check_layout(student: Detector, teacher: Detector, path: str | Path) -> None:
    """ConfigError naming the teacher checkpoint and both layouts unless every level has the same
    stride and number of anchors (the terms compare the two models cell by cell and anchor by anchor)."""
    s, t = _layout(student), _layout(teacher)
    if s != t:
        raise ConfigError(
            f"distill.teacher={path}: the teacher's (stride, anchors) per level {t} differ from the student's {s}; "
            "distillation compares the two cell by cell, so they must agree (anchor sizes may differ). Train the "
            "teacher with the student's strides and anchors per level (e.g. model=yolov4_csp_s for yolov4_nano)."
        )


def attach_distillation(model: Detector, node: Mapping[str, Any] | DictConfig | None,
                        device: torch.device | str = "cpu") -> Detector | None:
    """With ``node.teacher`` set: load it, check the layouts and replace ``model.loss_fn`` by the
    ``DISTILL_LOSSES`` entry ``node.type`` wrapping it. Returns the teacher, or None when off (the
    model untouched)."""
    cfg = _plain(node)
    path = cfg.get("teacher")
    if path is None or path == "":
        return None
    if not isinstance(path, (str, Path)):
        raise ConfigError(f"distill.teacher must be a checkpoint path or null, got {path!r}")
    use_ema = cfg.get("use_ema", True)
    if not isinstance(use_ema, bool):
        raise ConfigError(f"distill.use_ema must be true or false, got {use_ema!r}")
    teacher = load_teacher(path, device=device, use_ema=use_ema)
    check_layout(model, teacher, path)
    loss_node = {k: v for k, v in cfg.items() if k not in _RUN_KEYS}
    model.loss_fn = build(loss_node, DISTILL_LOSSES, where="distill", base=model.loss_fn, teacher=teacher,
                          teacher_decoder=teacher.head.decoding())
    log.info("distillation: %s, obj_weight %g, box_weight %g", loss_node.get("type"), model.loss_fn.obj_weight,
             model.loss_fn.box_weight)
    return teacher
