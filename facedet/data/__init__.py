"""Data: readers (one per label format), transforms and augmentations, data sets and their mosaic /
mixup wrappers, the loader and a synthetic set.

Importing this package registers the ``DATASETS`` (wider_txt, retinaface_txt, coco_json, voc_xml,
yolo_txt, synthetic) and the ``TRANSFORMS`` (letterbox, hflip, hsv, to_tensor, min_face_size,
affine, scale_crop, brightness_contrast, blur, noise, equalize, cutout).
"""

import os

# albumentations asks PyPI for a newer release at import time; facedet makes no network calls at
# run time (and offline the request only costs time), so switch it off unless the user set it.
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

from facedet.data.augment import (  # noqa: E402
    Blur,
    BrightnessContrast,
    Cutout,
    Equalize,
    Noise,
    RandomAffine,
    RandomScaleCrop,
)
from facedet.data.dataset import (
    CocoJsonDataset,
    FaceDataset,
    ImageError,
    RetinaFaceTxtDataset,
    SyntheticDataset,
    VocXmlDataset,
    WiderTxtDataset,
    YoloTxtDataset,
    load_image,
)
from facedet.data.loader import build_dataloader, collate, seed_transforms, worker_init_fn
from facedet.data.mosaic import MixUp, Mosaic, SharedValue, find_wrappers, wrap_train_dataset
from facedet.data.readers import (
    LabelError,
    LoadStats,
    Record,
    read_coco_json,
    read_retinaface_txt,
    read_voc_xml,
    read_wider_txt,
    read_yolo_txt,
)
from facedet.data.synthetic import ensure_synthetic, generate_synthetic, render_synthetic_image
from facedet.data.transforms import (
    HSV,
    Compose,
    HFlip,
    Letterbox,
    MinFaceSize,
    ToTensor,
    build_transforms,
    letterbox_shape,
)

__all__ = [
    "HSV",
    "Blur",
    "BrightnessContrast",
    "CocoJsonDataset",
    "Compose",
    "Cutout",
    "Equalize",
    "FaceDataset",
    "HFlip",
    "ImageError",
    "LabelError",
    "Letterbox",
    "LoadStats",
    "MinFaceSize",
    "MixUp",
    "Mosaic",
    "Noise",
    "RandomAffine",
    "RandomScaleCrop",
    "Record",
    "RetinaFaceTxtDataset",
    "SharedValue",
    "SyntheticDataset",
    "ToTensor",
    "VocXmlDataset",
    "WiderTxtDataset",
    "YoloTxtDataset",
    "build_dataloader",
    "build_transforms",
    "collate",
    "ensure_synthetic",
    "find_wrappers",
    "generate_synthetic",
    "letterbox_shape",
    "load_image",
    "read_coco_json",
    "read_retinaface_txt",
    "read_voc_xml",
    "read_wider_txt",
    "read_yolo_txt",
    "render_synthetic_image",
    "seed_transforms",
    "worker_init_fn",
    "wrap_train_dataset",
]
