"""The five points drawn: detections (tools/detect.py), the TensorBoard prediction grid and
facedet-draw's panels; absent (NaN) points are not drawn."""

from __future__ import annotations

import json

import cv2
import numpy as np
import torch
from torch import nn

from facedet.cli import draw_predictions as tool
from facedet.engine.prediction_grid import PredictionGridHook
from facedet.inference.draw import POINT_COLOURS, draw_detections, draw_points

NAN = float("nan")


def test_each_point_has_its_colour_and_absent_points_are_skipped():
    img = np.zeros((40, 60, 3), np.uint8)
    pts = np.array([[[10, 10], [30, 10], [20, 20], [NAN, NAN], [25, 30]]], np.float32)
    out = draw_detections(img, np.array([[2, 2, 50, 38]]), np.array([0.9]), show_scores=False, landmarks=pts)
    assert (img == 0).all()  # a copy
    for i in (0, 1, 2, 4):
        x, y = pts[0, i].astype(int)
        assert tuple(out[y, x]) == POINT_COLOURS[i]
    assert (draw_detections(img, np.zeros((0, 4)), np.zeros(0), landmarks=np.zeros((0, 5, 2))) == 0).all()
    huge = draw_points(img.copy(), np.array([[[1e30, 5], [NAN, 1], [5, 5], [5, 5], [5, 5]]]))  # no OpenCV overflow
    assert tuple(huge[5, 5]) == POINT_COLOURS[4]


def test_the_prediction_grid_draws_ground_truth_and_predicted_points():
    class OneFace(nn.Module):
        def predict(self, images: torch.Tensor) -> list[dict[str, torch.Tensor]]:
            pts = torch.tensor([[[8.0, 8.0], [16.0, 8.0], [12.0, 12.0], [9.0, 16.0], [15.0, 16.0]]])
            return [{"boxes": torch.tensor([[4.0, 4.0, 20.0, 20.0]]), "scores": torch.tensor([0.9]),
                     "labels": torch.zeros(1), "landmarks": pts} for _ in images]

    gt_points = torch.full((1, 5, 2), NAN)
    gt_points[0, 0] = torch.tensor([26.0, 20.0])
    item = {"image": torch.zeros(3, 32, 32), "target": {"boxes": torch.tensor([[22.0, 14.0, 30.0, 28.0]]),
                                                        "ignore": torch.tensor([False]), "landmarks": gt_points}}
    grid = PredictionGridHook([item] * 2, num_images=2, nrow=2).render(  # 2: make_grid pads only several
        OneFace(), torch.device("cpu"))
    tile = grid[:, 2:34, 2:34]
    assert tile[:, 8, 8].tolist() == list(POINT_COLOURS[0]) and tile[:, 16, 15].tolist() == list(POINT_COLOURS[4])
    assert tile[:, 20, 26].tolist() == [0, 255, 0]  # the ground-truth point, green
    box_only = {"image": torch.zeros(3, 32, 32), "target": {"boxes": torch.zeros(0, 4), "ignore": torch.zeros(0)}}
    tile = PredictionGridHook([box_only] * 2, num_images=2, nrow=2).render(
        OneFace(), torch.device("cpu"))[:, 2:34, 2:34]
    assert tile[:, 8, 8].tolist() == list(POINT_COLOURS[0])  # no ground-truth points: the predictions' still


def test_facedet_draw_shows_the_predicted_points(tmp_path, capsys):
    data = [f"data.root={tmp_path / 'syn'}", "data.num_train=2", "data.num_val=2", "data.img_size=128"]
    points = [40.0, 50.0, 60.0, 50.0, None, None, 45.0, 80.0, 55.0, 80.0]  # the nose absent
    preds = [{"image_id": 1, "category_id": 1, "bbox": [30.0, 40.0, 40.0, 50.0], "score": 0.9, "landmarks": points}]
    (tmp_path / "p.json").write_text(json.dumps(preds))
    out = tmp_path / "grid.png"
    assert tool.main([*data, "--predictions", str(tmp_path / "p.json"), "--out", str(out), "--ids", "1",
                      "--boxes-only", "--cols", "1"]) == 0
    img = cv2.cvtColor(cv2.imread(str(out)), cv2.COLOR_BGR2RGB)
    assert tuple(img[50, 40]) == POINT_COLOURS[0] and tuple(img[80, 55]) == POINT_COLOURS[4]
