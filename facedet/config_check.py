"""Types and ranges of the numbers in a training or evaluation config, checked up front.

A declarative table (key path -> ``Rule``) says what each value must be; ``validate_train_config``
checks a composed config against it before any data is read or any model is built, so
``train.epochs=abc`` or ``optim.lr=-0.01`` fails at once with one line that names the key, the
value and a valid example, instead of a traceback minutes later (or, for ``train.epochs=-1``, a
run that trains nothing). Keys missing from the config are skipped (tests and experiments may
compose partial configs); keys not in the table are not checked (experiments add their own).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from facedet.registry import ConfigError

_ABSENT = object()
_KIND_NAMES = {int: "an integer", float: "a number", bool: "true or false", str: "a name"}


@dataclass(frozen=True)
class Rule:
    """What one config value must be: ``kind`` (int, float, bool, or str with ``choices``, compared
    lower-case so ``true`` and ``True`` are one; a float key accepts integers), optional bounds
    (``ge``/``gt``/``le``/``lt``), ``multiple_of``, ``nullable`` (null allowed); ``what`` says what
    the key is and ``eg`` is a valid value, both for the error message."""

    kind: type
    what: str
    eg: Any
    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    multiple_of: int | None = None
    nullable: bool = False
    choices: tuple[str, ...] = ()

    def requirement(self) -> str:
        if self.choices:
            return "one of " + ", ".join(self.choices)
        bounds = [f"{op} {b:g}" for op, b in ((">=", self.ge), (">", self.gt), ("<=", self.le), ("<", self.lt))
                  if b is not None]
        if self.multiple_of:
            bounds.append(f"a multiple of {self.multiple_of}")
        text = " ".join([_KIND_NAMES[self.kind], " and ".join(bounds)]).strip()
        return text + (" (or null)" if self.nullable else "")

    def problem(self, value: Any) -> str | None:
        """Why ``value`` breaks the rule, or None when it is fine."""
        if value is None:
            return None if self.nullable else "it is null"
        if self.choices:
            return None if str(value).lower() in self.choices else f"got {value!r}"
        if self.kind is bool:
            return None if isinstance(value, bool) else f"got {value!r} ({type(value).__name__})"
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"got {value!r} ({'a string' if isinstance(value, str) else type(value).__name__})"
        if self.kind is int and not isinstance(value, int):
            return f"got {value!r} (not an integer)"
        if not math.isfinite(value):
            return f"got {value!r}"
        if ((self.ge is not None and value < self.ge) or (self.gt is not None and value <= self.gt)
                or (self.le is not None and value > self.le) or (self.lt is not None and value >= self.lt)
                or (self.multiple_of and value % self.multiple_of)):
            return f"got {value!r}"
        return None


def _int(what: str, eg: int, **kw: Any) -> Rule:
    return Rule(int, what, eg, **kw)


def _num(what: str, eg: float, **kw: Any) -> Rule:
    return Rule(float, what, eg, **kw)


def _flag(what: str) -> Rule:
    return Rule(bool, what, "true")


# configs/train.yaml, configs/optim/*.yaml, configs/schedule/*.yaml, and the data groups' img_size.
TRAIN_RULES: dict[str, Rule] = {
    "seed": _int("the random seed", 0),
    "train.epochs": _int("passes over the training set", 6, ge=1),
    "train.batch_size": _int("images per batch", 16, ge=1),
    "train.nominal_batch_size": _int("images per optimizer step, 0 = off", 64, ge=0),
    "train.num_workers": _int("data loader worker processes", 2, ge=0),
    "train.threads": _int("torch CPU threads, 0 = torch's default", 0, ge=0),
    "train.grad_clip": _num("the gradient norm clip, 0 = off", 10.0, ge=0),
    "train.nan_patience": _int("non-finite steps in a row before stopping", 10, ge=1),
    "train.save_interval": _int("optimizer steps between checkpoints, 0 = epoch ends only", 0, ge=0),
    "train.amp": Rule(str, "mixed precision on CUDA", "bf16", choices=("true", "false", "fp16", "bf16"),
                      nullable=True),
    "train.dist_backend": Rule(str, "the torchrun process group", "auto", choices=("auto", "nccl", "gloo")),
    "train.deterministic": _flag("deterministic kernels"),
    "train.sync_bn": _flag("SyncBatchNorm under torchrun"),
    "train.ddp_find_unused": _flag("DDP's find_unused_parameters"),
    "train.vis_images": _int("val images drawn per evaluation", 8, ge=0),
    "train.eval_interval": _int("epochs between evaluations", 3, ge=1),
    "train.log_interval": _int("steps between progress updates", 10, ge=1),
    "train.tensorboard": _flag("TensorBoard scalars"),
    "train.ema.enabled": _flag("the weights' moving average"),
    "train.ema.decay": _num("the EMA decay", 0.9999, gt=0, le=1),
    "train.ema.tau": _num("the EMA ramp in steps", 2000, gt=0),
    "eval.batch_size": _int("images per evaluation batch", 32, ge=1),
    "optim.lr": _num("the base learning rate", 0.004, gt=0),
    "optim.momentum": _num("SGD's momentum", 0.937, ge=0, lt=1),
    "optim.nesterov": _flag("Nesterov momentum"),
    "optim.beta1": _num("Adam's decay of the gradient average", 0.9, ge=0, lt=1),
    "optim.beta2": _num("Adam's decay of the squared-gradient average", 0.999, ge=0, lt=1),
    "optim.weight_decay": _num("weight decay", 0.0005, ge=0),
    "schedule.warmup_epochs": _num("warmup length in epochs", 1.0, ge=0),
    "schedule.warmup_min_steps": _int("the shortest warmup in steps", 100, ge=0),
    "schedule.warmup_start": _num("the learning-rate factor at step 0", 0.01, ge=0, le=1),
    "schedule.final_ratio": _num("the learning-rate factor at the last step", 0.01, ge=0, le=1),
    "data.img_size": _int("the training and test size in pixels; 32 is the largest stride", 256, ge=32,
                          multiple_of=32),
    "data.cache_images": _flag("keeping decoded images in RAM"),
}

# configs/eval.yaml (tools/eval.py)
EVAL_RULES: dict[str, Rule] = {
    "img_size": _int("the test size in pixels; 32 is the largest stride", 416, ge=32, multiple_of=32, nullable=True),
    "score_thresh": _num("the minimum score kept", 0.001, ge=0, le=1, nullable=True),
    "nms_iou": _num("the NMS IoU threshold", 0.5, gt=0, le=1, nullable=True),
    "max_det": _int("detections kept per image", 300, ge=1, nullable=True),
    "use_ema": _flag("evaluating the EMA weights"),
    "batch_size": _int("images per batch", 16, ge=1),
    "num_workers": _int("data loader worker processes", 2, ge=0),
}


def check_config(cfg: DictConfig | Mapping[str, Any], rules: Mapping[str, Rule]) -> None:
    """Check ``cfg`` against ``rules``; one ConfigError listing every bad key (nothing when all fit)."""
    if not isinstance(cfg, DictConfig):
        cfg = OmegaConf.create(dict(cfg))
    problems = []
    for key, rule in rules.items():
        try:
            value = OmegaConf.select(cfg, key, default=_ABSENT, throw_on_resolution_failure=True)
        except OmegaConfBaseException as e:  # an interpolation that does not resolve
            problems.append(f"{key} cannot be resolved ({type(e).__name__}: {str(e).splitlines()[0]})")
            continue
        if value is _ABSENT:
            continue
        why = rule.problem(value)
        if why is not None:
            problems.append(f"{key} must be {rule.requirement()} ({rule.what}), {why}; e.g. {key}={rule.eg}")
    if problems:
        raise ConfigError("; ".join(problems) + ". Fix it on the command line or in the config's YAML file.")


def validate_train_config(cfg: DictConfig | Mapping[str, Any]) -> None:
    """Raise ConfigError naming every training-config value of the wrong type or out of range."""
    check_config(cfg, TRAIN_RULES)


def validate_eval_config(cfg: DictConfig | Mapping[str, Any]) -> None:
    """Raise ConfigError naming every tools/eval.py config value of the wrong type or out of range."""
    check_config(cfg, EVAL_RULES)


def upgrade_config(old: Mapping[str, Any]) -> dict[str, Any]:
    """A resolved training config (a checkpoint's) in today's layout, so configs written by older
    versions compare equal to today's when nothing but the layout changed. Older layouts:
    ``optim.name`` (now ``optim.type``), AdamW's ``optim.momentum`` (its beta1; beta2 was 0.999) and
    ``optim.nesterov`` (unused by AdamW), a ``schedule`` without ``type`` (cosine was the only one),
    and the model keys ``facedet.models.model_config.RENAMED_KEYS`` lists (``iou_t``, ``ignore_thresh``,
    ``iou_thresh``). Returns a new dict; ``old`` is not changed."""
    from facedet.models.model_config import upgrade_train_config

    new = upgrade_train_config(old)
    optim = new.get("optim")
    if isinstance(optim, dict) and "name" in optim and "type" not in optim:
        optim = {"type": optim.pop("name"), **optim}
        if optim["type"] == "adamw":
            if "momentum" in optim:
                optim["beta1"] = optim.pop("momentum")
                optim.setdefault("beta2", 0.999)
            optim.pop("nesterov", None)
        new["optim"] = optim
    schedule = new.get("schedule")
    if isinstance(schedule, dict) and "type" not in schedule:
        new["schedule"] = {"type": "cosine", **schedule}
    return new



def _off(switch: str, off: Any) -> Any:
    """A test that a node added later is off: absent, null, or its ``switch`` key at ``off``."""
    return lambda v: v is None or (isinstance(v, Mapping) and v.get(switch, off) == off)


# Keys added to the training config after runs had been stored (older checkpoints lack them), each
# with the test that today's value means what the older version did. A checkpoint without the key
# then still resumes (``train.resume=auto`` picks it) as long as the option stays off.
ADDED_KEYS: dict[str, Any] = {
    "model.head.num_landmarks": lambda v: v == 0,  # issue 14: landmarks
    "model.loss.landmark_loss": lambda v: v is None,
    "model.loss.landmark_weight": lambda v: True,  # unused without landmark_loss
    "model.postprocess.landmark_vote_iou": lambda v: True,  # unused without landmarks
    "model.backbone.out_strides": lambda v: list(v or ()) == [8, 16, 32],  # issue 16: small faces
    "model.loss.box_weight_by_size": lambda v: v is False,
    "model.loss.obj_mining": lambda v: v is None,
    "aug.copy_paste": _off("p", 0),
    "aug.oversample": _off("enabled", False),
    "aug.high_res": _off("size", 0),
    "distill": _off("teacher", None),
}


def added_as_before(key: str, value: Any) -> bool:
    """Whether ``key``, absent from an older stored config, has a ``value`` today that computes what
    the older version computed (``ADDED_KEYS``); False for keys not in the table."""
    test = ADDED_KEYS.get(key)
    return bool(test is not None and test(value))
