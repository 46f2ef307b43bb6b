"""Temporal smoothing of face boxes across video frames, against the jitter of per-frame detection.

Each frame's detections are matched to the previous frame's (smoothed) boxes by IoU with the
Hungarian algorithm (``scipy.optimize.linear_sum_assignment``); a matched box becomes
``alpha * detected + (1 - alpha) * previous`` (an exponential moving average), an unmatched one is
taken as detected. The five points of a face, when given, follow its box's match with the same
weight. Only the current frame's detections are returned: a face that was not detected is not
drawn from memory.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torchvision.ops import box_iou


class BoxSmoother:
    """``smoother(boxes)``: (K, 4) xyxy of one frame -> the smoothed (K, 4), in the same order;
    ``smoother.smooth(boxes, landmarks)`` also smooths each face's (5, 2) points with its box's
    match (a point absent before or now is taken as detected).

    ``alpha`` in (0, 1]: weight of the new detection (1 = no smoothing); ``iou_thresh``: minimum
    IoU for a detection to continue a previous box.
    """

    def __init__(self, *, alpha: float = 0.5, iou_thresh: float = 0.3) -> None:
        if not 0 < alpha <= 1:
            raise ValueError(f"smoothing alpha must lie in (0, 1], got {alpha}")
        self.alpha = float(alpha)
        self.iou_thresh = float(iou_thresh)
        self.reset()

    def reset(self) -> None:
        self.previous = np.zeros((0, 4), np.float32)
        self.previous_points: np.ndarray | None = None

    def __call__(self, boxes: np.ndarray) -> np.ndarray:
        return self.smooth(boxes)[0]

    def smooth(self, boxes: np.ndarray, landmarks: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None]:
        """(smoothed boxes (K, 4), smoothed landmarks (K, P, 2) or None when not given)."""
        boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
        out = boxes.copy()
        points = None if landmarks is None else np.asarray(landmarks, np.float32).reshape(len(boxes), -1, 2).copy()
        if len(boxes) and len(self.previous):
            iou = box_iou(torch.from_numpy(boxes), torch.from_numpy(self.previous)).numpy()
            rows, cols = linear_sum_assignment(-iou)
            ok = iou[rows, cols] >= self.iou_thresh
            rows, cols = rows[ok], cols[ok]
            out[rows] = self.alpha * boxes[rows] + (1 - self.alpha) * self.previous[cols]
            prev = self.previous_points
            if points is not None and prev is not None and prev.shape[1:] == points.shape[1:]:
                mixed = self.alpha * points[rows] + (1 - self.alpha) * prev[cols]
                points[rows] = np.where(np.isfinite(mixed), mixed, points[rows])
        self.previous, self.previous_points = out, points
        return out, points
