"""Aligned face crops for face recognition: a similarity transform (rotation, uniform scale,
translation) that takes a face's five points onto the standard template, and the warped crop.

The template is ArcFace's (insightface ``arcface_torch``/``face_align.py``) for 112 x 112 crops:
left eye, right eye, nose tip, left mouth corner, right mouth corner, in the order facedet's
landmarks use (left = the image's left). Other sizes scale it by ``size / 112``.

The transform is estimated by OpenCV (``cv2.estimateAffinePartial2D``: the 4-parameter similarity)
and applied with ``cv2.warpAffine``. OpenCV only offers robust estimators (RANSAC, LMedS); with a
reprojection threshold far larger than any face every point is an inlier, so the result is the
Levenberg-Marquardt least-squares fit to all the points present, as face-recognition pipelines
(insightface's ``SimilarityTransform.estimate``) use; dropping a noisy point as an outlier would
make a crop jump between frames.
"""

from __future__ import annotations

import cv2
import numpy as np

ARCFACE_SIZE = 112
ARCFACE_TEMPLATE = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]],
    np.float32,
)
ALL_INLIERS = 1e6  # RANSAC reprojection threshold in template pixels: every point counts (see above)


def template(size: int = ARCFACE_SIZE) -> np.ndarray:
    """The five-point template for a ``size`` x ``size`` crop (ArcFace's, scaled)."""
    if size <= 0:
        raise ValueError(f"crop size must be positive, got {size}")
    return ARCFACE_TEMPLATE * np.float32(size / ARCFACE_SIZE)


def similarity_to_template(points: np.ndarray, size: int = ARCFACE_SIZE) -> np.ndarray | None:
    """The 2 x 3 similarity matrix taking the face's (5, 2) ``points`` (image pixels) onto the
    template of a ``size`` crop, fitted to the points present (NaN = absent); None when fewer than
    two points are present or OpenCV finds no transform (coincident points)."""
    pts = np.asarray(points, np.float32).reshape(5, 2)
    ok = np.isfinite(pts).all(1)
    if ok.sum() < 2:  # a similarity has 4 degrees of freedom: two points fix it
        return None
    matrix, _ = cv2.estimateAffinePartial2D(pts[ok], template(size)[ok], method=cv2.RANSAC,
                                            ransacReprojThreshold=ALL_INLIERS, maxIters=1, refineIters=50)
    return matrix


def align_face(image: np.ndarray, points: np.ndarray, size: int = ARCFACE_SIZE, *,
               border_value: int = 0) -> np.ndarray | None:
    """The ``size`` x ``size`` crop of ``image`` (HxWxC) with the face's five ``points`` on the
    template (bilinear; outside the image filled with ``border_value``), or None when the points
    do not fix a transform (see ``similarity_to_template``)."""
    matrix = similarity_to_template(points, size)
    if matrix is None:
        return None
    return cv2.warpAffine(image, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                          borderValue=(border_value,) * 3)
