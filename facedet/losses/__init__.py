"""Losses: IoU-family box terms (torchvision.ops first), landmark point losses, the YOLO
detection loss and its distillation from a teacher."""

from facedet.losses.distill import DistillLoss
from facedet.losses.iou import box_similarity, ciou, ciou_loss, diou, giou
from facedet.losses.landmark import SmoothL1Loss, WingLoss
from facedet.losses.targets import landmarks_to_tensor, max_iou_per_image, pad_per_image, targets_to_tensor
from facedet.losses.yolo_loss import YOLOLoss

__all__ = [
    "DistillLoss",
    "SmoothL1Loss",
    "WingLoss",
    "YOLOLoss",
    "box_similarity",
    "ciou",
    "ciou_loss",
    "diou",
    "giou",
    "landmarks_to_tensor",
    "max_iou_per_image",
    "pad_per_image",
    "targets_to_tensor",
]
