"""Data: readers (one per label format), transforms, data sets, the loader and a synthetic set.

Importing this package registers the ``DATASETS`` (wider_txt, coco_json, synthetic) and the
``TRANSFORMS`` (letterbox, hflip, hsv, to_tensor).
"""

from facedet.data.dataset import CocoJsonDataset, FaceDataset, SyntheticDataset, WiderTxtDataset, load_image
from facedet.data.loader import build_dataloader, collate, seed_transforms, worker_init_fn
from facedet.data.readers import LoadStats, Record, read_coco_json, read_wider_txt
from facedet.data.synthetic import ensure_synthetic, generate_synthetic, render_synthetic_image
from facedet.data.transforms import (
    HSV,
    Compose,
    HFlip,
    Letterbox,
    ToTensor,
    build_transforms,
    letterbox_shape,
)

__all__ = [
    "HSV",
    "CocoJsonDataset",
    "Compose",
    "FaceDataset",
    "HFlip",
    "Letterbox",
    "LoadStats",
    "Record",
    "SyntheticDataset",
    "ToTensor",
    "WiderTxtDataset",
    "build_dataloader",
    "build_transforms",
    "collate",
    "ensure_synthetic",
    "generate_synthetic",
    "letterbox_shape",
    "load_image",
    "read_coco_json",
    "read_wider_txt",
    "render_synthetic_image",
    "seed_transforms",
    "worker_init_fn",
]
