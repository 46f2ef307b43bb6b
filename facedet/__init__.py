"""facedet: a config-driven training framework for YOLOv3/v4-style face detectors."""

__version__ = "0.1.0"
