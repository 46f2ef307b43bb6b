"""Run a detector over a data loader and score it: the one evaluation path that training and
``tools/eval.py`` share, so a checkpoint re-evaluated later gives the number training reported."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from facedet.engine.distributed import gather_across_ranks
from facedet.evaluation.coco import COCOEvaluator
from facedet.inference.predictor import to_original
from facedet.inference.tta import TTA, predict_with_tta

log = logging.getLogger(__name__)

# The metrics named in a PR-curve title and the evaluation log line, when present.
HEADLINE = ("AP50", "AP", "wider_easy", "wider_medium", "wider_hard")


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
    evaluators: Sequence[Any] | None = None,
    tta: TTA | None = None,
    pr_curve_path: str | Path | None = None,
) -> dict[str, Any]:
    """Metrics of ``model`` on ``loader``'s dataset (which must expose ``records``) from every
    evaluator (default: COCO only), merged into one dict.

    Predictions (with test-time augmentation ``tta``) are mapped back to original image pixels,
    boxes and (when the model predicts them) the five landmarks.
    With ``results_path`` the COCO results json is written there; with ``pr_curve_path`` a PNG of
    the evaluators' precision-recall curves. ``settings`` (test size, thresholds) are returned
    beside the numbers, completed with the TTA and the evaluators actually used, so every figure
    carries the conditions that produced it.
    """
    was_training = model.training
    model.eval()
    evaluators = list(evaluators) if evaluators is not None else [COCOEvaluator(loader.dataset.records)]
    evaluators = [gather_across_ranks(ev) for ev in evaluators]  # DDP: ranks' shards, scored once on rank 0
    for ev in evaluators:
        ev.reset()
    tta = tta or TTA()
    autocast = torch.autocast(device.type, enabled=amp and device.type == "cuda")
    for batch in tqdm(loader, desc="eval", leave=False, disable=not progress):
        images = batch["images"].to(device, non_blocking=True)
        with autocast:
            preds = predict_with_tta(model, images, tta)
        mapped = [to_original(pred, meta) for pred, meta in zip(preds, batch["metas"], strict=True)]
        ids = [m["image_id"] for m in batch["metas"]]
        for ev in evaluators:
            ev.update(mapped, ids)
    model.train(was_training)
    return finish_evaluation(evaluators, settings=settings, tta=tta, results_path=results_path,
                             pr_curve_path=pr_curve_path)


def evaluate_images(
    predict: Callable[[Sequence[np.ndarray]], list[dict[str, np.ndarray]]],
    records: Sequence[Any],
    *,
    evaluators: Sequence[Any],
    batch_size: int = 16,
    settings: dict[str, Any] | None = None,
    results_path: str | Path | None = None,
    pr_curve_path: str | Path | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Metrics of a detector with the Predictor contract (``predict(images)``: HxWx3 uint8 RGB arrays
    -> per image ``{boxes, scores[, landmarks]}`` numpy in original pixels), run on the original images
    of ``records`` (read as the data sets read them): an exported model in a runtime letterboxes
    itself, so it is fed what a user would feed it, and scored by the same evaluators as ``evaluate``."""
    from facedet.data.dataset import load_image

    evaluators = list(evaluators)
    for ev in evaluators:
        ev.reset()
    for start in tqdm(range(0, len(records), batch_size), desc="eval", leave=False, disable=not progress):
        chunk = records[start:start + batch_size]
        preds = predict([load_image(r.image_path) for r in chunk])
        mapped = [{k: torch.from_numpy(np.asarray(v, np.float32)) for k, v in p.items()} for p in preds]
        for ev in evaluators:
            ev.update(mapped, [r.image_id for r in chunk])
    return finish_evaluation(evaluators, settings=settings, results_path=results_path, pr_curve_path=pr_curve_path,
                             tta=TTA())


def finish_evaluation(
    evaluators: Sequence[Any],
    *,
    settings: dict[str, Any] | None = None,
    tta: TTA | None = None,
    results_path: str | Path | None = None,
    pr_curve_path: str | Path | None = None,
) -> dict[str, Any]:
    """``compute()`` every evaluator (already updated) and merge: a metric name given by two
    evaluators is an error rather than one silently replacing the other. Writes the COCO results
    json and the PR-curve PNG when asked."""
    metrics: dict[str, Any] = {}
    curves: dict[str, Any] = {}
    for ev in evaluators:
        m = ev.compute()
        clash = sorted(set(m) & set(metrics))
        if clash:
            raise ValueError(f"two evaluators both report {clash}; give each evaluator its own metrics")
        metrics |= m
        if pr_curve_path is not None and hasattr(ev, "pr_curves"):  # only where drawn (rank 0 under DDP)
            curves |= ev.pr_curves()
    if settings is not None or tta is not None:
        metrics["settings"] = dict(settings or {}) | {
            "tta": (tta or TTA()).describe(),
            "evaluators": [type(ev).__name__ for ev in evaluators],
        }
    if results_path is not None:
        writer = next((ev for ev in evaluators if hasattr(ev, "write_results")), None)
        if writer is not None:
            writer.write_results(results_path)
    if pr_curve_path is not None and curves:
        from facedet.evaluation.pr_plot import save_pr_curves

        shown = [f"{k} {metrics[k]:.3f}" for k in HEADLINE if isinstance(metrics.get(k), float)]
        save_pr_curves(curves, pr_curve_path, title=" | ".join([Path(pr_curve_path).stem, *shown]))
    return metrics
