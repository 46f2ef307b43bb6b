"""The evaluation loop with several evaluators, the recorded settings, the PR-curve PNG, AP50 per
face size, and how the training hook picks its metric."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torch import nn

from facedet.builders import build_dataset
from facedet.data import build_dataloader
from facedet.engine.eval_hook import EvalHook, resolve_metric
from facedet.engine.evaluate import evaluate
from facedet.evaluation import COCOEvaluator, WiderFaceEvaluator, build_evaluators
from facedet.registry import ConfigError

from .conftest import GroundTruth as Rec
from .wider_utils import make_wider_layout


class Oracle(nn.Module):
    """``predict`` returns the queued boxes (input pixels) in loader order: a perfect detector."""

    def __init__(self, queue):
        super().__init__()
        self.queue = list(queue)

    def predict(self, images):
        return [self.queue.pop(0) for _ in range(len(images))]


@pytest.fixture(scope="module")
def wider(tmp_path_factory):
    root, gt_dir, _ = make_wider_layout(tmp_path_factory.mktemp("wider"), n_images=6)
    node = {"type": "wider_txt", "ann_file": str(root / "wider_face_split" / "wider_face_val_bbx_gt.txt"),
            "img_dir": str(root / "WIDER_val" / "images")}
    dataset = build_dataset(node, img_size=128, aug=None, cache_images=False, where="data.val")
    loader = build_dataloader(dataset, batch_size=4, shuffle=False, num_workers=0, seed=0)
    return loader, gt_dir


def oracle_for(loader) -> Oracle:
    preds = []
    for batch in loader:
        for t in batch["targets"]:
            n = len(t["boxes"])
            preds.append({"boxes": t["boxes"], "scores": torch.linspace(0.9, 0.5, n), "labels": torch.zeros(n)})
    return Oracle(preds)


def test_one_pass_feeds_coco_and_wider_and_records_the_settings(wider, tmp_path):
    loader, gt_dir = wider
    evaluators = build_evaluators({"coco": {"type": "coco"}, "widerface": {"type": "widerface", "gt_dir": str(gt_dir)},
                                   "off": None}, loader.dataset.records)
    png = tmp_path / "pr.png"
    m = evaluate(oracle_for(loader), loader, device=torch.device("cpu"), evaluators=evaluators, pr_curve_path=png,
                 settings={"img_size": 128}, results_path=tmp_path / "p.json", progress=False)
    assert m["AP50"] == pytest.approx(1.0) and m["wider_easy"] == m["wider_medium"] == m["wider_hard"] == 1.0
    assert m["wider_images"] == 6
    assert m["settings"] == {"img_size": 128, "tta": {"mode": "none", "flip": False, "scales": [1.0]},
                             "evaluators": ["COCOEvaluator", "WiderFaceEvaluator"]}
    img = cv2.imread(str(png))
    assert img is not None and img.shape == (480, 640, 3) and (img != 255).any()
    assert len(json.loads((tmp_path / "p.json").read_text())) == sum(len(r.boxes) for r in loader.dataset.records)


def test_a_metric_reported_twice_is_an_error(wider):
    loader, _ = wider
    twice = [COCOEvaluator(loader.dataset.records), COCOEvaluator(loader.dataset.records)]
    with pytest.raises(ValueError, match="both report"):
        evaluate(oracle_for(loader), loader, device=torch.device("cpu"), evaluators=twice, progress=False)


def test_ap50_per_face_size():
    sizes = [10, 20, 50, 120]  # tiny, small, medium, large
    boxes = np.array([[10 + 150 * i, 10, 10 + 150 * i + s, 10 + s] for i, s in enumerate(sizes)], np.float32)
    ev = COCOEvaluator([Rec("a.jpg", (200, 700), boxes, np.zeros(4, bool))])
    found = boxes[[0, 2, 3]]  # the small face is missed
    fp_large = np.array([[300, 60, 400, 160]], np.float32)  # a confident large false positive
    ev.update([{"boxes": torch.tensor(np.vstack([fp_large, found])), "scores": torch.tensor([0.99, 0.9, 0.8, 0.7])}],
              ["a.jpg"])
    m = ev.compute()
    assert [m[f"faces_{b}"] for b in ("tiny", "small", "medium", "large")] == [1, 1, 1, 1]
    assert m["AP50_tiny"] == pytest.approx(1.0) and m["AP50_medium"] == pytest.approx(1.0)
    assert m["AP50_small"] == 0.0
    assert 0.4 < m["AP50_large"] < 0.6  # the large false positive ranks first: precision 1/2 at full recall
    assert set(ev.pr_curves()) == {"COCO AP50"}
    no_tiny = COCOEvaluator([Rec("a.jpg", (200, 700), boxes[1:], np.zeros(3, bool))])
    no_tiny.update([{"boxes": torch.tensor(boxes[1:]), "scores": torch.ones(3)}], ["a.jpg"])
    assert np.isnan(no_tiny.compute()["AP50_tiny"])


def test_best_metric_names_are_checked_before_training(wider):
    loader, gt_dir = wider
    coco = build_evaluators(None, loader.dataset.records)
    both = build_evaluators({"coco": {"type": "coco"}, "w": {"type": "widerface", "gt_dir": str(gt_dir)}},
                            loader.dataset.records)
    assert resolve_metric("coco_ap50", coco) == "AP50" and resolve_metric("AP50_tiny", coco) == "AP50_tiny"
    assert resolve_metric("wider_hard", both) == "wider_hard"
    with pytest.raises(ConfigError, match="need eval=widerface"):
        resolve_metric("wider_hard", coco)
    with pytest.raises(ConfigError, match="Did you mean 'wider_hard'"):
        EvalHook(loader, interval=1, metric="wider_hrad", run_dir=Path("."), settings={}, evaluators=both)


def test_the_hook_marks_best_by_the_configured_metric_and_saves_pr_curves(wider, tmp_path):
    loader, gt_dir = wider
    evaluators = build_evaluators({"coco": {"type": "coco"}, "w": {"type": "widerface", "gt_dir": str(gt_dir)}},
                                  loader.dataset.records)
    hook = EvalHook(loader, interval=1, metric="wider_hard", run_dir=tmp_path, settings={}, evaluators=evaluators,
                    progress=False)

    class T:  # the trainer state the hook reads and writes
        epoch, max_epochs, step, device, amp = 0, 2, 10, torch.device("cpu"), False
        best_metric, metrics = float("-inf"), {}

    hook.trainer = t = T()
    t.model = t.eval_model = oracle_for(loader)
    hook.after_epoch()
    assert t.is_best and t.best_metric == 1.0 and t.metrics["wider_hard"] == 1.0
    assert (tmp_path / "pr_curves" / "epoch_001.png").is_file() and (tmp_path / "predictions.json").is_file()
    t.epoch, t.model = 1, Oracle([{"boxes": torch.zeros(0, 4), "scores": torch.zeros(0)}] * 6)  # finds nothing
    t.eval_model = t.model
    hook.after_epoch()
    assert not t.is_best and t.metrics["wider_hard"] == 0.0 and len(hook.history) == 2
    assert isinstance(evaluators[1], WiderFaceEvaluator)
