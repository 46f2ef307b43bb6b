"""A trained detector ready for images: load a checkpoint, letterbox, predict, map boxes (and the
five landmarks, when the model predicts them) back to the image's pixels.

``load_detector`` is shared by ``tools/eval.py``, ``tools/detect.py`` and ``tools/export.py``: it
rebuilds the model from the config stored in a training checkpoint (so no model config has to be
given), loads the EMA weights when present and lets the post-processing be overridden.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from facedet.data.transforms import Letterbox, ToTensor, check_img_size
from facedet.inference.tta import TTA, predict_with_tta
from facedet.registry import POSTPROCESSORS, ConfigError, closest
from facedet.structures import boxes_to_original, empty_sample_arrays

POSTPROCESS_KEYS = ("score_thresh", "nms_iou", "max_det", "landmark_vote_iou")


def override_postprocess(model_cfg: DictConfig, *, nms: str | None = None, **values: Any) -> None:
    """Set the NMS variant (``diou_nms``, ``nms``, ``soft_nms``) and thresholds (``score_thresh``,
    ``nms_iou``, ``max_det``, ``landmark_vote_iou``) of a model config in the new form
    (``upgrade_model_config``) in place; ``None`` leaves a value as configured."""
    import facedet.postprocess  # noqa: F401  (registers the NMS family)

    post = model_cfg.postprocess
    if nms is not None:
        if nms not in POSTPROCESSORS:
            guess = closest(str(nms), POSTPROCESSORS.names())
            raise ConfigError(f"Unknown NMS '{nms}' at 'nms'. Known: {', '.join(POSTPROCESSORS.names())}."
                              + (f" Did you mean '{guess}'?" if guess else ""))
        post.type = nms
    for key, value in values.items():
        if key not in POSTPROCESS_KEYS:
            raise ConfigError(f"Unknown post-processing key '{key}'. Known: {', '.join(POSTPROCESS_KEYS)}.")
        if value is not None:
            post[key] = value


def load_detector(
    checkpoint: str | Path, *, use_ema: bool = True, device: torch.device | str = "cpu", nms: str | None = None,
    **postprocess: Any,
) -> tuple[torch.nn.Module, DictConfig, str]:
    """(model in eval mode on ``device``, the training config stored in the checkpoint with its
    model config upgraded to the current key names and the overrides applied, which weights:
    ``ema`` or ``model``)."""
    from facedet.checkpoint import load_checkpoint, load_model_state, model_weights, require_training_checkpoint
    from facedet.models import build_detector
    from facedet.models.model_config import upgrade_train_config

    ckpt = load_checkpoint(checkpoint)
    # the model is rebuilt from the config training stored: a bare state dict cannot say which model it is
    require_training_checkpoint(ckpt, checkpoint, needs=("config", "model"), use="checkpoint=")
    train_cfg = OmegaConf.create(upgrade_train_config(ckpt["config"]))
    override_postprocess(train_cfg.model, nms=nms, **postprocess)
    model = build_detector(train_cfg.model)
    which, state = model_weights(ckpt, use_ema=use_ema)
    load_model_state(model, state, f"{checkpoint} ({which} weights)")
    return model.to(device).eval(), train_cfg, which


def landmarks_to_original(points: torch.Tensor, meta: dict[str, Any]) -> torch.Tensor:
    """(K, P, 2) points from letterboxed input pixels back to original image pixels: the inverse
    letterbox of ``boxes_to_original``, but not clipped to the image (a point of a face cut by the
    border may lie outside it; clipping would move it, and with it the NME and the aligned crop)."""
    left, top = meta["pad"]
    return (points - points.new_tensor([left, top])) / meta["ratio"]


def to_original(pred: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, torch.Tensor]:
    """One image's ``{boxes, scores[, landmarks]}`` (any device, any float type) in original pixels,
    float32 on the CPU; ``landmarks`` only when the prediction has them."""
    out = {"boxes": boxes_to_original(pred["boxes"].float().cpu(), meta), "scores": pred["scores"].float().cpu()}
    if pred.get("landmarks") is not None:
        out["landmarks"] = landmarks_to_original(pred["landmarks"].float().cpu(), meta)
    return out


class Predictor:
    """``predictor(images)``: HxWx3 uint8 RGB arrays -> per image ``{boxes (K, 4) xyxy float32 in the
    image's pixels, scores (K,)}`` (numpy), by descending score, plus ``landmarks (K, 5, 2)`` in the
    image's pixels when the model predicts them.

    Images are letterboxed to ``img_size`` exactly as in evaluation (so results match
    ``tools/eval.py``) and predicted with the model's post-processing and optional ``tta``.
    """

    def __init__(self, model: torch.nn.Module, *, img_size: int, device: torch.device | str = "cpu",
                 tta: TTA | None = None, pad_value: int = 128) -> None:
        check_img_size(img_size)
        self.model = model.eval()
        self.device = torch.device(device)
        self.img_size = int(img_size)
        self.tta = tta or TTA()
        self.letterbox = Letterbox(size=img_size, pad_value=pad_value)
        self.to_tensor = ToTensor()

    def preprocess(self, image: np.ndarray, name: str = "") -> tuple[torch.Tensor, dict[str, Any]]:
        """One RGB image -> (3xSxS float tensor, meta with the letterbox ratio and padding)."""
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"expected an HxWx3 uint8 RGB image, got {image.dtype} {image.shape} ({name})")
        sample = {"image": image, "image_id": name, "orig_size": image.shape[:2], **empty_sample_arrays()}
        item = self.to_tensor(self.letterbox(sample))
        return item["image"], item["meta"]

    @torch.no_grad()
    def __call__(self, images: Sequence[np.ndarray]) -> list[dict[str, np.ndarray]]:
        if not images:
            return []
        tensors, metas = zip(*(self.preprocess(im) for im in images), strict=True)
        batch = torch.stack(tensors).to(self.device)
        preds = predict_with_tta(self.model, batch, self.tta)
        return [{k: v.numpy() for k, v in to_original(p, meta).items()} for p, meta in zip(preds, metas, strict=True)]
