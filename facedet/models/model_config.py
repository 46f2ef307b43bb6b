"""Model-config keys renamed in issue 13, the upgrade that lets older configs (those stored in
checkpoints) build the same model, and the assigner's anchor IoU threshold of a model config.

Three IoU thresholds of different meanings had names that did not say which (``iou_t``,
``ignore_thresh``, ``iou_thresh``); each now names its IoU:

- ``loss.assigner.anchor_iou`` (was ``iou_t``): *shape* IoU of an anchor and a face (widths and
  heights, centres aligned) above which the anchor is a positive;
- ``loss.ignore_iou`` (was ``ignore_thresh``): box IoU of a prediction and a face above which a
  non-positive prediction is not punished as background;
- ``postprocess.nms_iou`` (was ``iou_thresh``): IoU (DIoU for ``diou_nms``) above which NMS
  suppresses the lower-scoring of two boxes.

``upgrade_model_config`` moves the old keys to the new names with their values unchanged, so a
``best.pt`` saved before the rename rebuilds the same detector and re-evaluates to the same AP.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from facedet.registry import ASSIGNERS, ConfigError, build

# (old key, new key) under the model config; the last parts differ, the parents are the same.
RENAMED_KEYS: tuple[tuple[str, str], ...] = (
    ("loss.assigner.iou_t", "loss.assigner.anchor_iou"),
    ("loss.ignore_thresh", "loss.ignore_iou"),
    ("postprocess.iou_thresh", "postprocess.nms_iou"),
)


def _plain(value: Any) -> Any:
    """A deep plain-Python copy (dicts and lists) of a config or of a mapping holding configs."""
    if isinstance(value, (DictConfig, ListConfig)):
        return OmegaConf.to_container(value, resolve=True)
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return copy.deepcopy(value)


def _rename(node: dict[str, Any], old: str, new: str, path: str) -> dict[str, Any]:
    """``node`` with key ``old`` renamed to ``new`` in place of the old one (key order kept)."""
    if new in node:
        raise ConfigError(f"model.{path}.{old} is the old name of model.{path}.{new}; give only {new}.")
    return {(new if k == old else k): v for k, v in node.items()}


def upgrade_model_config(cfg: Mapping[str, Any] | DictConfig) -> dict[str, Any]:
    """A plain copy of the model config ``cfg`` with every key of ``RENAMED_KEYS`` under its new
    name and its value unchanged. A config already in the new form comes back as it was; one that
    gives a key under both names is a ConfigError."""
    plain = _plain(cfg)
    for old, new in RENAMED_KEYS:
        *parents, old_key = old.split(".")
        chain = [plain]
        for p in parents:
            chain.append(chain[-1].get(p) if isinstance(chain[-1], dict) else None)
        if not isinstance(chain[-1], dict) or old_key not in chain[-1]:
            continue
        renamed = _rename(chain[-1], old_key, new.rsplit(".", 1)[1], ".".join(parents))
        chain[-2][parents[-1]] = renamed
    return plain


def upgrade_train_config(cfg: Mapping[str, Any] | DictConfig) -> dict[str, Any]:
    """A plain copy of a whole training config (as stored in checkpoints) with its ``model`` node
    upgraded by ``upgrade_model_config``; for comparing an old run's config with a new one."""
    plain = _plain(cfg)
    if isinstance(plain.get("model"), dict):
        plain["model"] = upgrade_model_config(plain["model"])
    return plain


def anchor_iou_of(model_cfg: Mapping[str, Any] | DictConfig) -> float:
    """The anchor IoU threshold of the assigner that ``model_cfg`` builds (``anchor_iou`` or, in an
    old config, ``iou_t``; the assigner's default when the config leaves it out): the one value
    both the training-start anchor check and ``tools/kmeans_anchors.py`` measure fit against."""
    import facedet.assign  # noqa: F401  (registers ASSIGNERS)

    loss = upgrade_model_config(model_cfg).get("loss")
    if not isinstance(loss, dict) or "assigner" not in loss:
        raise ConfigError("The model config has no 'model.loss.assigner'.")
    return float(build(loss["assigner"], ASSIGNERS, where="model.loss.assigner").anchor_iou)
