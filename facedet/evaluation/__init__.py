"""Evaluation: COCO mAP (pycocotools), WIDER FACE Easy/Medium/Hard (the official protocol) and the
five-point landmark NME.

Importing this package registers the ``EVALUATORS`` (coco, widerface, landmarks).
"""

from facedet.evaluation.base import EVALUATORS, build_evaluators
from facedet.evaluation.coco import COCOEvaluator
from facedet.evaluation.landmarks import LandmarkEvaluator
from facedet.evaluation.widerface import WiderFaceEvaluator, WiderGroundTruth, evaluate_wider

__all__ = ["EVALUATORS", "COCOEvaluator", "LandmarkEvaluator", "WiderFaceEvaluator", "WiderGroundTruth",
           "build_evaluators", "evaluate_wider"]
