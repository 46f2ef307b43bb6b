"""Post-processing of decoded detections: the NMS family."""

from facedet.postprocess.nms import NMS, DIoUNMS, diou_nms, greedy_suppression

__all__ = ["NMS", "DIoUNMS", "diou_nms", "greedy_suppression"]
