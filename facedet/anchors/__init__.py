"""Anchors from data: k-means with 1 - IoU distance, genetic refinement, fit reports and the
training-start check."""

from facedet.anchors.fit import anchors_yaml, fit_anchors, per_level, write_anchors
from facedet.anchors.kmeans import anchor_fitness, genetic_refine, kmeans_iou, shape_iou, sort_by_area
from facedet.anchors.report import (
    AnchorReport,
    anchor_report,
    check_anchors,
    check_training_anchors,
    letterboxed_wh,
)

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
