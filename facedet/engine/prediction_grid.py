"""A TensorBoard image grid of predictions on a few fixed validation images at each evaluation."""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import Dataset
from torchvision.utils import draw_bounding_boxes, make_grid

from facedet.engine.hook_base import PRIORITY_PREDICTION_GRID, HookBase


class PredictionGridHook(HookBase):
    """After each epoch that was evaluated, draws the evaluated model's (EMA when present)
    detections in red with their scores and the ground truth in green (ignored faces in yellow)
    on the first ``num_images`` items of ``dataset`` (the validation set, in input pixels), and
    adds the grid to ``trainer.tb_writer`` as ``val/predictions``. Needs the LoggingHook's writer;
    does nothing without one (rank > 0, TensorBoard off)."""

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
            tiles.append(tile)
        return make_grid(tiles, nrow=self.nrow, padding=2, pad_value=255)
