"""Anchors from data: k-means with 1 - IoU distance, genetic refinement, fit reports and the
training-start check."""

from facedet.anchors.fit import anchors_yaml, fit_anchors, per_level, write_anchors
from facedet.anchors.kmeans import anchor_fitness, genetic_refine, kmeans_iou, shape_iou, sort_by_area
from facedet.anchors.report import (
    AnchorReport,
    anchor_report,
    check_anchors,
    letterboxed_wh,
)

# TEMPORARY (issue 13 merge): engine/run.py still calls check_training_anchors(cfg, train_set, model).
# When it calls facedet.anchors.report.check_training_anchors with values, export that one here instead.
from facedet.anchors.report import check_training_anchors_of_run as check_training_anchors  # noqa: E402

__all__ = [
    "AnchorReport",
    "anchor_fitness",
    "anchors_yaml",
    "anchor_report",
    "check_anchors",
    "check_training_anchors",
    "fit_anchors",
    "genetic_refine",
    "kmeans_iou",
    "letterboxed_wh",
    "per_level",
    "shape_iou",
    "sort_by_area",
    "write_anchors",
]
