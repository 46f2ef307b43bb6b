"""Models: layers, backbones, necks, heads and the Detector that joins them."""

from facedet.models.detector import Detector, build_detector

__all__ = ["Detector", "build_detector"]
