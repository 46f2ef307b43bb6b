"""Landmark evaluation: NME by hand on a small case, greedy matching, what is not scored, the
results json with landmarks (written and read back, peers' files), and the evaluation loop mapping
points back through the letterbox."""

from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torch import nn

from facedet.builders import build_dataset
from facedet.data import build_dataloader
from facedet.data.records import Record
from facedet.engine.eval_hook import resolve_metric, summary_line
from facedet.engine.evaluate import evaluate, finish_evaluation
from facedet.evaluation import COCOEvaluator, LandmarkEvaluator, build_evaluators
from facedet.evaluation.landmarks import greedy_match
from facedet.evaluation.results import read_coco_results
from facedet.registry import ConfigError

NAN = math.nan
# face 1 of a.jpg: box 100 x 100 (size 100), eyes 40 apart
GT1 = [[30, 40], [70, 40], [50, 60], [35, 80], [65, 80]]
# its prediction: errors 5, 0, 10, 0, 10 -> mean 5 -> NME_box 0.05, NME_iod 0.125
P1 = [[33, 44], [70, 40], [50, 70], [35, 80], [71, 88]]
# face 1 of b.jpg: box 40 x 40 (size 40), eyes 20 apart, nose absent
GT2 = [[10, 15], [30, 15], [NAN, NAN], [12, 30], [28, 30]]
# its prediction: 6 px off on every point (the nose is not scored) -> NME_box 0.15 (a failure), NME_iod 0.3
P2 = [[16, 15], [30, 21], [0, 0], [6, 30], [28, 24]]
NO_POINTS = [[NAN, NAN]] * 5


def rec(name, size, boxes, points, ignore=None):
    n = len(boxes)
    return Record(image_path=Path(name), image_id=name, boxes=np.array(boxes, np.float32).reshape(n, 4),
                  ignore=np.array(ignore or [False] * n, bool), landmarks=np.array(points, np.float32).reshape(n, 5, 2),
                  orig_size=size)


def records():
    a = rec("a.jpg", (200, 200), [[0, 0, 100, 100], [120, 120, 180, 180]], [GT1, NO_POINTS])
    b = rec("b.jpg", (200, 200), [[0, 0, 40, 40], [100, 100, 150, 150], [160, 0, 200, 40]],
            [GT2, GT1, GT1], ignore=[False, False, True])
    return [a, b]


def pred(boxes, scores, points=None):
    out = {"boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
           "scores": torch.tensor(scores, dtype=torch.float32)}
    if points is not None:
        out["landmarks"] = torch.tensor(points, dtype=torch.float32).reshape(-1, 5, 2)
    return out


def hand_case():
    """Predictions for ``records()``: face 1 of a.jpg found twice (the duplicate scores less and has
    wild points) and once by a confident box at IoU < 0.5; its face without points found; face 1
    of b.jpg found; face 2 of b.jpg missed; its ignored face (with points) found."""
    wild = [[500, 500]] * 5
    a = pred([[0, 0, 100, 100], [2, 2, 100, 100], [0, 0, 100, 45], [120, 120, 180, 180]], [0.8, 0.7, 0.95, 0.6],
             [P1, wild, wild, wild])
    b = pred([[0, 0, 40, 40], [160, 0, 200, 40]], [0.9, 0.9], [P2, wild])
    return [a, b], ["a.jpg", "b.jpg"]


EXPECTED = {"NME_box": (0.05 + 0.15) / 2, "NME_iod": (0.125 + 0.3) / 2, "NME_fail10": 0.5,
            "landmark_missed": 1 / 3, "faces_with_points": 3}


def test_nme_by_hand():
    ev = LandmarkEvaluator(records())
    ev.update(*hand_case())
    m = ev.compute()
    assert set(m) == set(LandmarkEvaluator.metric_names)
    for k, v in EXPECTED.items():
        assert m[k] == pytest.approx(v, abs=1e-9), k


def test_greedy_matching_goes_by_score_then_iou():
    gt = np.array([[0, 0, 10, 10], [4, 0, 14, 10]], np.float64)
    # the best-scoring box overlaps both; it takes the one of higher IoU, the next takes what is left
    boxes = np.array([[3, 0, 13, 10], [0, 0, 10, 10]], np.float64)
    assert greedy_match(boxes, np.array([0.9, 0.8]), gt, 0.5).tolist() == [1, 0]
    assert greedy_match(boxes[:1], np.array([0.9]), gt, 0.5).tolist() == [-1, 0]
    assert greedy_match(boxes, np.array([0.9, 0.8]), gt, 0.99).tolist() == [1, -1]
    assert greedy_match(np.zeros((0, 4)), np.zeros(0), gt, 0.5).tolist() == [-1, -1]


def test_min_score_and_iou_thresh_are_applied():
    ev = LandmarkEvaluator(records(), min_score=0.85)  # a.jpg's 0.8 box is dropped; only the IoU-0.45 box is left
    ev.update(*hand_case())
    m = ev.compute()
    assert m["landmark_missed"] == pytest.approx(2 / 3) and m["NME_box"] == pytest.approx(0.15)
    ev = LandmarkEvaluator(records(), iou_thresh=0.4)  # now the confident IoU-0.45 box with wild points matches
    ev.update(*hand_case())
    assert ev.compute()["NME_box"] > 1


def test_nothing_is_reported_without_points_or_without_predicted_landmarks():
    ev = LandmarkEvaluator(records())
    preds, ids = hand_case()
    ev.update([{k: v for k, v in p.items() if k != "landmarks"} for p in preds], ids)  # a box-only model
    assert ev.compute() == {}
    boxes_only = [rec("a.jpg", (200, 200), [[0, 0, 100, 100]], [NO_POINTS])]
    ev = LandmarkEvaluator(boxes_only)
    ev.update([pred([[0, 0, 100, 100]], [0.9], [P1])], ["a.jpg"])
    assert ev.compute() == {} and ev.faces_with_points == 0
    with pytest.raises(KeyError, match="unknown image"):
        ev.update([pred([], [])], ["zzz.jpg"])


def test_every_face_missed_gives_nan_nme_and_all_missed():
    ev = LandmarkEvaluator(records())
    ev.update([pred([], [], np.zeros((0, 5, 2))), pred([], [], np.zeros((0, 5, 2)))], ["a.jpg", "b.jpg"])
    m = ev.compute()
    assert math.isnan(m["NME_box"]) and math.isnan(m["NME_fail10"]) and m["landmark_missed"] == 1.0


def test_nme_metrics_cannot_be_the_best_metric_and_show_in_the_log_line():
    evs = build_evaluators({"coco": {"type": "coco"}, "landmarks": {"type": "landmarks"}}, records())
    assert resolve_metric("AP50", evs) == "AP50"
    with pytest.raises(ConfigError, match="lower-is-better"):
        resolve_metric("NME_box", evs)
    line = summary_line({"AP50": 0.9, "AP": 0.5} | EXPECTED)
    assert "NME box 10.00% iod 21.25% fail>10% 50.00% missed 33.33% (3 faces with points)" in line
    assert "NME" not in summary_line({"AP50": 0.9, "AP": 0.5})


def test_the_results_json_carries_landmarks_and_reads_back_to_the_same_metrics(tmp_path):
    coco, lm = COCOEvaluator(records()), LandmarkEvaluator(records())
    preds, ids = hand_case()
    for ev in (coco, lm):
        ev.update(preds, ids)
    path = tmp_path / "predictions.json"
    m = finish_evaluation([coco, lm], results_path=path)
    assert {k: m[k] for k in EXPECTED} == pytest.approx(EXPECTED)
    saved = json.loads(path.read_text())
    assert all(len(e["landmarks"]) == 10 for e in saved)
    assert saved[0]["landmarks"] == [v for p in P1 for v in p]  # image 1, first detection
    back = read_coco_results(path, records())
    assert torch.equal(back["a.jpg"]["landmarks"][0], torch.tensor(P1, dtype=torch.float32))
    again = LandmarkEvaluator(records())
    again.update([back[i] for i in ids], ids)
    assert again.compute() == pytest.approx({k: m[k] for k in EXPECTED})


def test_a_peers_landmarks_are_read_and_checked(tmp_path):
    recs = records()
    path = tmp_path / "peer.json"
    entries = [{"image_id": "a.jpg", "bbox": [0, 0, 100, 100], "score": 0.9, "landmarks": [v for p in P1 for v in p]},
               {"image_id": "b", "bbox": [0, 0, 40, 40], "score": 0.9,
                "landmarks": [16, 15, 30, 21, None, None, 6, 30, 28, 24]},
               {"image_id": 2, "bbox": [100, 100, 50, 50], "score": 0.5}]  # no landmarks: NaN
    path.write_text(json.dumps(entries))
    got = read_coco_results(path, recs)
    assert got["b.jpg"]["landmarks"].shape == (2, 5, 2) and torch.isnan(got["b.jpg"]["landmarks"][1]).all()
    assert torch.isnan(got["b.jpg"]["landmarks"][0, 2]).all()
    ev = LandmarkEvaluator(recs)
    ev.update([got[i] for i in ("a.jpg", "b.jpg")], ["a.jpg", "b.jpg"])
    m = ev.compute()
    # face 2 of b.jpg is matched by a detection without points: not missed, not scored
    assert m["NME_box"] == pytest.approx(0.1) and m["landmark_missed"] == 0.0
    for bad, why in (([1] * 9, "10 numbers"), (["x"] * 10, "numbers"), ([1e999] * 10, "finite"),
                     ([NAN] * 10, "finite")):
        path.write_text(json.dumps([entries[0] | {"landmarks": bad}]))
        with pytest.raises(ValueError, match=f"entry 0: landmarks must be .*{why}"):
            read_coco_results(path, recs)
    path.write_text(json.dumps(entries[2:]))  # no entry has landmarks: a box-only file stays box-only
    assert "landmarks" not in read_coco_results(path, recs)["b.jpg"]


class PointOracle(nn.Module):
    """``predict`` returns each image's ground truth (input pixels) with its points moved by
    ``shift`` input pixels: a detector whose only error is a known landmark offset."""

    def __init__(self, loader, shift):
        super().__init__()
        self.queue = []
        for batch in loader:
            for t in batch["targets"]:
                n = len(t["boxes"])
                self.queue.append({"boxes": t["boxes"], "scores": torch.linspace(0.9, 0.5, n),
                                   "labels": torch.zeros(n), "landmarks": t["landmarks"] + torch.tensor(shift)})

    def predict(self, images):
        return [self.queue.pop(0) for _ in range(len(images))]


def test_the_evaluation_loop_maps_points_back_through_the_letterbox(tmp_path):
    # a 200 x 100 image letterboxed to 64: ratio 0.32 -> a 0.32 px input shift is 1 px in the image
    cv2.imwrite(str(tmp_path / "wide.jpg"), np.full((100, 200, 3), 90, np.uint8))
    pts = " ".join(f"{x} {y} 0.0" for x, y in [[60, 40], [100, 40], [80, 60], [65, 80], [95, 80]])
    (tmp_path / "label.txt").write_text(f"# wide.jpg\n40 20 80 80 {pts}\n")
    node = {"type": "retinaface_txt", "ann_file": str(tmp_path / "label.txt"), "img_dir": str(tmp_path)}
    loader = build_dataloader(build_dataset(node, img_size=64, aug=None, cache_images=False, where="data.val"),
                              batch_size=1, shuffle=False, num_workers=0, seed=0)
    evs = build_evaluators({"coco": {"type": "coco"}, "landmarks": {"type": "landmarks"}}, loader.dataset.records)
    m = evaluate(PointOracle(loader, [0.32 * 3, 0.32 * 4]), loader, device=torch.device("cpu"), evaluators=evs,
                 results_path=tmp_path / "p.json", progress=False)
    assert m["AP50"] == pytest.approx(1.0)
    assert m["NME_box"] == pytest.approx(5 / 80, rel=1e-4) and m["NME_iod"] == pytest.approx(5 / 40, rel=1e-4)
    assert m["landmark_missed"] == 0 and m["faces_with_points"] == 1 and m["NME_fail10"] == 0
    saved = json.loads((tmp_path / "p.json").read_text())[0]["landmarks"]
    assert saved == pytest.approx([63, 44, 103, 44, 83, 64, 68, 84, 98, 84], abs=0.02)


def test_tools_eval_scores_a_peers_landmarks_and_prints_them(tmp_path):
    from facedet.cli.evaluate import format_metrics, run

    from .conftest import compose_config

    for name, size in (("a.jpg", (200, 200)), ("b.jpg", (200, 200))):
        cv2.imwrite(str(tmp_path / name), np.full((*size, 3), 90, np.uint8))
    lines = []
    for r in records():  # RetinaFace label.txt has no ignore flag: the ignored face is left out
        lines.append(f"# {r.image_id}")
        for box, points, ign in zip(r.boxes, r.landmarks, r.ignore, strict=True):
            if not ign:
                pts = " ".join("-1 -1 -1" if np.isnan(p).any() else f"{p[0]:g} {p[1]:g} 0.0" for p in points)
                lines.append(f"{box[0]:g} {box[1]:g} {box[2] - box[0]:g} {box[3] - box[1]:g} {pts}")
    (tmp_path / "label.txt").write_text("\n".join(lines) + "\n")
    preds, ids = hand_case()
    coco = COCOEvaluator(records())
    coco.update(preds, ids)
    coco.write_results(tmp_path / "peer.json")
    val = f"{{type:retinaface_txt,ann_file:{tmp_path / 'label.txt'},img_dir:{tmp_path}}}"
    cfg = compose_config([f"results={tmp_path / 'peer.json'}", f"+data.val={val}", "+data.name=hand",
                          "+data.img_size=64"], name="eval")
    m = run(cfg, tmp_path / "out")
    assert {k: m[k] for k in EXPECTED} == pytest.approx(EXPECTED)
    assert json.loads((tmp_path / "out" / "metrics.json").read_text())["NME_box"] == pytest.approx(0.1)
    text = format_metrics(m)
    assert "Landmarks  NME box 10.00% iod 21.25% fail>10% 50.00% missed 33.33% (3 faces with points)" in text
