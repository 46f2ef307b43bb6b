"""Losses: IoU-family box terms (torchvision.ops first) and the YOLO detection loss."""

from facedet.losses.iou import box_similarity, ciou, ciou_loss, diou, giou
from facedet.losses.yolo_loss import YOLOLoss, max_iou_per_image, pad_per_image, targets_to_tensor

__all__ = [
    "YOLOLoss",
    "box_similarity",
    "ciou",
    "ciou_loss",
    "diou",
    "giou",
    "max_iou_per_image",
    "pad_per_image",
    "targets_to_tensor",
]
