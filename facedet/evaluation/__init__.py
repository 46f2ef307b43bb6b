"""Evaluation: COCO mAP (pycocotools) and WIDER FACE Easy/Medium/Hard (the official protocol).

Importing this package registers the ``EVALUATORS`` (coco, widerface).
"""

from facedet.evaluation.base import EVALUATORS, build_evaluators
from facedet.evaluation.coco import COCOEvaluator
from facedet.evaluation.widerface import WiderFaceEvaluator, WiderGroundTruth, evaluate_wider

__all__ = ["EVALUATORS", "COCOEvaluator", "WiderFaceEvaluator", "WiderGroundTruth", "build_evaluators",
           "evaluate_wider"]
