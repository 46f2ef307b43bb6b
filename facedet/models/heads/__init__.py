"""Heads; importing a module registers it in ``HEADS``."""

from facedet.models.heads.yolo_head import YOLOHead

__all__ = ["YOLOHead"]
