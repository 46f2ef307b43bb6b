"""A TensorBoard image grid of predictions on a few fixed validation images at each evaluation."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset
from torchvision.utils import draw_bounding_boxes, make_grid

from facedet.engine.hook_base import PRIORITY_PREDICTION_GRID, HookBase
from facedet.inference.draw import draw_points


class PredictionGridHook(HookBase):
    """After each epoch that was evaluated, draws the evaluated model's (EMA when present)
    detections in red with their scores and the ground truth in green (ignored faces in yellow),
    with the five landmarks as dots (ground truth green; predictions one colour per point, the
    ``facedet.inference.draw.POINT_COLOURS``), on the first ``num_images`` items of ``dataset``
    (the validation set, in input pixels), and adds the grid to ``trainer.tb_writer`` as
    ``val/predictions``. Needs the LoggingHook's writer; does nothing without one (rank > 0,
    TensorBoard off)."""

    priority = PRIORITY_PREDICTION_GRID
    state_key = "prediction_grid"

    def __init__(self, dataset: Dataset, *, num_images: int = 8, score_thresh: float = 0.3, nrow: int = 4) -> None:
        self.dataset = dataset
        self.num_images = max(0, int(num_images))
        self.score_thresh = float(score_thresh)
        self.nrow = max(1, int(nrow))
        self._items: list[dict[str, Any]] | None = None

    def after_epoch(self) -> None:
        t = self.trainer
        writer = t.tb_writer
        if writer is None or not self.num_images or t.metrics.get("epoch") != t.epoch + 1:
            return
        writer.add_image("val/predictions", self.render(t.eval_model, t.device), t.step)

    @torch.no_grad()
    def render(self, model: torch.nn.Module, device: torch.device) -> torch.Tensor:
        """uint8 ``(3, H, W)`` grid of the first images with ground truth and predictions drawn."""
        if self._items is None:  # the val transforms are not random: load once
            self._items = [self.dataset[i] for i in range(min(self.num_images, len(self.dataset)))]
        images = torch.stack([it["image"] for it in self._items])
        was_training = model.training
        model.eval()
        preds = model.predict(images.to(device))
        model.train(was_training)
        tiles = []
        for img, item, pred in zip(images, self._items, preds, strict=True):
            tile = (img.clamp(0, 1) * 255).to(torch.uint8)
            gt, ign = item["target"]["boxes"], item["target"]["ignore"].bool()
            if len(gt):
                colors = ["yellow" if i else "lime" for i in ign.tolist()]
                tile = draw_bounding_boxes(tile, gt.float(), colors=colors, width=1)
            keep = pred["scores"].float().cpu() >= self.score_thresh
            boxes, scores = pred["boxes"].float().cpu()[keep], pred["scores"].float().cpu()[keep]
            if len(boxes):
                tile = draw_bounding_boxes(tile, boxes, labels=[f"{s:.2f}" for s in scores.tolist()],
                                           colors="red", width=1)
            points = pred["landmarks"].float().cpu()[keep] if pred.get("landmarks") is not None else None
            tiles.append(with_points(tile, item["target"].get("landmarks"), points))
        return make_grid(tiles, nrow=self.nrow, padding=2, pad_value=255)


def with_points(tile: torch.Tensor, gt: torch.Tensor | None, predicted: torch.Tensor | None) -> torch.Tensor:
    """The uint8 (3, H, W) ``tile`` with the ground-truth points (green; NaN = absent, not drawn)
    and the predicted points (one colour per point) drawn; ``tile`` itself when there are none."""
    has_gt = gt is not None and bool(torch.isfinite(gt).any())
    if not has_gt and (predicted is None or not len(predicted)):
        return tile
    img = np.ascontiguousarray(tile.permute(1, 2, 0).numpy())
    if has_gt:
        draw_points(img, gt.float().cpu().numpy(), radius=1, colours=((0, 255, 0),))
    if predicted is not None:
        draw_points(img, predicted.numpy(), radius=1)
    return torch.from_numpy(img).permute(2, 0, 1).contiguous()
