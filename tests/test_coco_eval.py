"""COCO evaluation: perfect, empty and partly wrong predictions; ignored faces; the results json."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from facedet.evaluation.coco import COCOEvaluator, records_to_coco
from facedet.structures import boxes_to_original

from .conftest import GroundTruth as Rec


def _records():
    return [
        Rec("a.jpg", (100, 200), np.array([[10, 10, 50, 60], [100, 20, 140, 70]], np.float32), np.array([0, 0], bool)),
        Rec("b.jpg", (120, 80), np.array([[5, 5, 40, 45], [50, 50, 60, 62]], np.float32), np.array([0, 1], bool)),
    ]


def _pred(boxes, scores):
    return {"boxes": torch.tensor(boxes, dtype=torch.float32), "scores": torch.tensor(scores)}


def test_ground_truth_marks_ignored_faces_as_crowd():
    gt = records_to_coco(_records())
    assert [a["iscrowd"] for a in gt["annotations"]] == [0, 0, 0, 1]
    assert gt["annotations"][0]["bbox"] == [10, 10, 40, 50]
    assert gt["images"][1] == {"id": 2, "file_name": "b.jpg", "height": 120, "width": 80}


def test_perfect_predictions_score_one_and_ignored_hits_are_not_false_positives(tmp_path):
    recs = _records()
    ev = COCOEvaluator(recs)
    ev.update([_pred(recs[0].boxes, [0.9, 0.8]), _pred(recs[1].boxes, [0.7, 0.95])], ["a.jpg", "b.jpg"])
    m = ev.compute()
    assert m["AP50"] == pytest.approx(1.0) and m["AP"] == pytest.approx(1.0)
    ev.write_results(tmp_path / "p.json")
    res = json.loads((tmp_path / "p.json").read_text())
    assert len(res) == 4 and res[0]["bbox"] == [10, 10, 40, 50] and res[0]["image_id"] == 1


def test_a_confident_false_positive_lowers_ap():
    recs = _records()
    ev = COCOEvaluator(recs)
    fp = [[150, 80, 190, 99]]
    ev.update([_pred(recs[0].boxes.tolist() + fp, [0.5, 0.4, 0.99]), _pred(recs[1].boxes[:1], [0.6])],
              ["a.jpg", "b.jpg"])
    m = ev.compute()
    assert 0.5 < m["AP50"] < 1.0


def test_no_predictions_give_zero():
    m = COCOEvaluator(_records()).compute()
    assert m["AP50"] == 0.0 and m["num_detections"] == 0


def test_unknown_image_is_an_error():
    with pytest.raises(KeyError, match="zzz"):
        COCOEvaluator(_records()).update([_pred([[0, 0, 1, 1]], [0.5])], ["zzz.jpg"])


def test_boxes_map_back_from_letterboxed_pixels():
    meta = {"image_id": "a", "orig_size": (100, 200), "ratio": 1.6, "pad": (0.0, 80.0)}
    orig = torch.tensor([[10.0, 10.0, 50.0, 60.0]])
    letterboxed = orig * 1.6 + torch.tensor([0.0, 80.0, 0.0, 80.0])
    assert torch.allclose(boxes_to_original(letterboxed, meta), orig)
    outside = torch.tensor([[-20.0, 0.0, 400.0, 300.0]])
    assert boxes_to_original(outside, meta).tolist() == [[0.0, 0.0, 200.0, 100.0]]
