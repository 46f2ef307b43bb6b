"""Label formats: one module per format, each with a reader (-> records, stats) and a writer.

``FORMATS`` says what each format can hold, so ``facedet.data.convert`` can refuse a conversion that
would lose ignore flags, landmarks or WIDER attributes (unless asked to).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from facedet.data.formats.coco import read_coco_json, write_coco_json
from facedet.data.formats.retinaface import read_retinaface_txt, write_retinaface_txt
from facedet.data.formats.voc import read_voc_xml, write_voc_xml
from facedet.data.formats.wider import read_wider_txt, write_wider_txt
from facedet.data.formats.yolo import LANDMARK_LAYOUTS as YOLO_LANDMARK_LAYOUTS
from facedet.data.formats.yolo import default_label_dir, read_yolo_txt, write_yolo_txt


def _read_yolo(ann, img_dir, **kw):
    """The common ``(ann, img_dir)`` order: for YOLO ``ann`` is the labels folder."""
    return read_yolo_txt(img_dir, ann, **kw)


@dataclass(frozen=True)
class Format:
    """A label format: reader ``(ann, img_dir) -> (records, stats)``, writer ``(records, out)``."""

    read: Callable
    write: Callable
    ignore: bool  # can hold ignore flags
    landmarks: bool  # can hold five landmarks
    attributes: bool  # can hold the WIDER attribute columns
    out_is_dir: bool  # the writer's ``out`` is a folder (one file per image), not a file


FORMATS: dict[str, Format] = {
    "wider": Format(read_wider_txt, write_wider_txt, True, False, True, False),
    "retinaface": Format(read_retinaface_txt, write_retinaface_txt, False, True, False, False),
    "coco": Format(read_coco_json, write_coco_json, True, True, True, False),
    "voc": Format(read_voc_xml, write_voc_xml, True, False, False, True),
    "yolo": Format(_read_yolo, write_yolo_txt, True, True, False, True),
}

__all__ = [
    "FORMATS",
    "YOLO_LANDMARK_LAYOUTS",
    "Format",
    "default_label_dir",
    "read_coco_json",
    "read_retinaface_txt",
    "read_voc_xml",
    "read_wider_txt",
    "read_yolo_txt",
    "write_coco_json",
    "write_retinaface_txt",
    "write_voc_xml",
    "write_wider_txt",
    "write_yolo_txt",
]
