"""Run a detector over a data loader and score it: the one evaluation path that training and
``tools/eval.py`` share, so a checkpoint re-evaluated later gives the number training reported."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from facedet.engine.distributed import gather_across_ranks
from facedet.evaluation.coco import COCOEvaluator
from facedet.structures import boxes_to_original

log = logging.getLogger(__name__)


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: DataLoader,
    *,
    device: torch.device,
    amp: bool = False,
    results_path: str | Path | None = None,
    settings: dict[str, Any] | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """COCO metrics of ``model`` on ``loader``'s dataset (which must expose ``records``).

    Predictions are mapped back to original image pixels. With ``results_path`` the COCO results
    json is written there. ``settings`` (test size, thresholds) are returned
    beside the numbers so every figure carries the conditions that produced it.
    """
    was_training = model.training
    model.eval()
    evaluator = gather_across_ranks(COCOEvaluator(loader.dataset.records))  # DDP: ranks' shards, scored once
    autocast = torch.autocast(device.type, enabled=amp and device.type == "cuda")
    for batch in tqdm(loader, desc="eval", leave=False, disable=not progress):
        images = batch["images"].to(device, non_blocking=True)
        with autocast:
            preds = model.predict(images)
        mapped = []
        for pred, meta in zip(preds, batch["metas"], strict=True):
            mapped.append({"boxes": boxes_to_original(pred["boxes"].float().cpu(), meta),
                           "scores": pred["scores"].float().cpu()})
        evaluator.update(mapped, [m["image_id"] for m in batch["metas"]])
    metrics: dict[str, Any] = evaluator.compute()
    if settings:
        metrics["settings"] = settings
    if results_path is not None:
        evaluator.write_results(results_path)
    model.train(was_training)
    return metrics
