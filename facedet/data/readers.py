"""Annotation readers, one per label format, each returning ``(records, LoadStats)``.

The readers live in ``facedet.data.formats`` (one module per format, with its writer); the shared
types and validation rules in ``facedet.data.records``. This module keeps the names importable from
one place.
"""

from facedet.data.formats import (
    read_coco_json,
    read_retinaface_txt,
    read_voc_xml,
    read_wider_txt,
    read_yolo_txt,
)
from facedet.data.records import LabelError, LoadStats, Record

__all__ = [
    "LabelError",
    "LoadStats",
    "Record",
    "read_coco_json",
    "read_retinaface_txt",
    "read_voc_xml",
    "read_wider_txt",
    "read_yolo_txt",
]
