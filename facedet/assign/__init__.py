"""Target assignment: which anchors and cells predict which ground-truth face."""

from facedet.assign.scale_aware import ScaleAwareAssigner
from facedet.assign.yolo_assigner import LevelAssignment, YOLOv4Assigner, wh_iou

__all__ = ["LevelAssignment", "ScaleAwareAssigner", "YOLOv4Assigner", "wh_iou"]
