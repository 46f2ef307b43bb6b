"""Drawing detections (boxes, scores and the five landmarks) on images (OpenCV)."""

from __future__ import annotations

import cv2
import numpy as np

BOX_COLOUR = (0, 255, 0)  # RGB
# One colour per point, so a left/right swap shows: left eye, right eye, nose tip, left mouth
# corner, right mouth corner (left = the image's left). RGB.
POINT_COLOURS = ((255, 0, 0), (0, 0, 255), (255, 255, 0), (255, 0, 255), (0, 255, 255))


def draw_points(image: np.ndarray, landmarks: np.ndarray, *, radius: int = 2,
                colours: tuple[tuple[int, int, int], ...] = POINT_COLOURS) -> np.ndarray:
    """Draw (K, P, 2) points in place on the uint8 ``image`` (point i in ``colours[i]``); NaN
    (absent) points are skipped. Returns ``image``."""
    pts = np.asarray(landmarks, np.float64)
    for face in pts.reshape(-1, pts.shape[-2], 2):
        for i, (x, y) in enumerate(face):
            if abs(x) < 1e6 and abs(y) < 1e6:  # False for NaN; OpenCV's int coordinates stay in range
                cv2.circle(image, (int(round(x)), int(round(y))), radius, colours[i % len(colours)], -1, cv2.LINE_8)
    return image


def draw_detections(image: np.ndarray, boxes: np.ndarray, scores: np.ndarray, *, line_width: int = 2,
                    colour: tuple[int, int, int] = BOX_COLOUR, show_scores: bool = True,
                    landmarks: np.ndarray | None = None) -> np.ndarray:
    """A copy of the HxWx3 uint8 ``image`` with each xyxy box drawn and labelled with its score,
    and its five points (``landmarks`` (K, 5, 2), when given) as dots, one colour per point."""
    out = np.ascontiguousarray(image).copy()
    font_scale = max(0.35, line_width * 0.2)
    for (x1, y1, x2, y2), s in zip(np.asarray(boxes).reshape(-1, 4), np.asarray(scores).reshape(-1), strict=True):
        p1, p2 = (int(round(x1)), int(round(y1))), (int(round(x2)), int(round(y2)))
        cv2.rectangle(out, p1, p2, colour, line_width, cv2.LINE_8)
        if show_scores:
            label = f"{s:.2f}"
            (tw, th), base = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, font_scale, 1)
            top = p1[1] - th - base - 2 if p1[1] - th - base - 2 >= 0 else p2[1]  # above the box, else below
            cv2.rectangle(out, (p1[0], top), (p1[0] + tw + 2, top + th + base + 2), colour, -1)
            cv2.putText(out, label, (p1[0] + 1, top + th + 1), cv2.FONT_HERSHEY_SIMPLEX, font_scale, (0, 0, 0), 1,
                        cv2.LINE_AA)
    if landmarks is not None:
        draw_points(out, landmarks, radius=max(1, line_width))
    return out
