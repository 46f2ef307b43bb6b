"""Post-processing of decoded detections: the NMS family (DIoU-NMS, NMS, soft-NMS)."""

from facedet.postprocess.nms import NMS, DIoUNMS, diou_nms, greedy_suppression
from facedet.postprocess.soft_nms import SoftNMS

__all__ = ["NMS", "DIoUNMS", "SoftNMS", "diou_nms", "greedy_suppression"]
