"""MixUp as a dataset wrapper: blends two finished items (``r ~ Beta(alpha, alpha)``) and keeps the
faces of both."""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import Dataset

from facedet.data.wrappers import DatasetWrapper
from facedet.registry import DATASET_WRAPPERS, ConfigError


@DATASET_WRAPPERS.register("mixup")
class MixUp(DatasetWrapper):
    """With probability ``p`` blend the item with a random other one, ``r ~ Beta(alpha, alpha)``
    (YOLOv5: alpha 32, r near 0.5); the faces of both are kept."""

    def __init__(self, dataset: Dataset, *, p: float = 0.1, alpha: float = 32.0) -> None:
        if not 0 <= p <= 1 or alpha <= 0:
            raise ConfigError(f"mixup needs 0 <= p <= 1 and alpha > 0, got p={p}, alpha={alpha}")
        super().__init__(dataset, p=p)
        self.alpha = float(alpha)

    def __getitem__(self, index: int) -> dict[str, Any]:
        item = self.dataset[index]
        if self.rng.random() >= self.p.value:
            return item
        other = self.dataset[int(self.rng.integers(0, len(self.dataset)))]
        if other["image"].shape != item["image"].shape:
            raise RuntimeError(f"mixup needs equal image sizes, got {tuple(item['image'].shape)} and "
                               f"{tuple(other['image'].shape)}")
        r = float(self.rng.beta(self.alpha, self.alpha))
        image = item["image"] * r + other["image"] * (1 - r)
        if item["image"].dtype == torch.uint8:  # inside a loader worker (see ToTensor.worker_uint8)
            image = image.round_().to(torch.uint8)
        target = {k: torch.cat([item["target"][k], other["target"][k]]) for k in item["target"]}
        return {"image": image, "target": target, "meta": item["meta"]}
