"""Inference: a checkpoint as a ready predictor, test-time augmentation, video smoothing, drawing."""

from facedet.inference.draw import draw_detections
from facedet.inference.predictor import Predictor, load_detector, override_postprocess
from facedet.inference.smoothing import BoxSmoother
from facedet.inference.tta import TTA, predict_with_tta

__all__ = ["TTA", "BoxSmoother", "Predictor", "draw_detections", "load_detector", "override_postprocess",
           "predict_with_tta"]
