"""Data: readers (one per label format), transforms and augmentations, data sets and their wrappers
(oversample, mosaic, copy-paste, mixup), the loader and a synthetic set.

Importing this package registers the ``READERS`` (wider_txt, retinaface_txt, coco_json, voc_xml,
yolo_txt, synthetic) with one ``DATASETS`` entry each (all build a ``FaceDataset``), the
``DATASET_WRAPPERS`` (oversample, mosaic, copy_paste, mixup) and the ``TRANSFORMS`` (letterbox, hflip,
hsv, to_tensor, min_face_size, affine, scale_crop, brightness_contrast, blur, noise, equalize, cutout).
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
from facedet.data.chain import innermost_dataset, iter_dataset_chain
from facedet.data.copy_paste import CopyPaste
from facedet.data.dataset import FaceDataset, ImageError, ReaderDataset, load_image
from facedet.data.loader import build_dataloader, collate, seed_transforms, worker_init_fn
from facedet.data.mixup import MixUp
from facedet.data.mosaic import Mosaic
from facedet.data.oversample import Oversample
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
    LETTERBOX_PAD,
    Compose,
    HFlip,
    Letterbox,
    LetterboxPipeline,
    MinFaceSize,
    ToTensor,
    build_transforms,
    check_img_size,
    letterbox_shape,
)
from facedet.data.wrappers import DatasetWrapper, SharedValue, find_wrappers, wrap_train_dataset

__all__ = [
    "HSV",
    "LETTERBOX_PAD",
    "Blur",
    "BrightnessContrast",
    "Compose",
    "CopyPaste",
    "Cutout",
    "DatasetWrapper",
    "Equalize",
    "FaceDataset",
    "HFlip",
    "ImageError",
    "LabelError",
    "Letterbox",
    "LetterboxPipeline",
    "LoadStats",
    "MinFaceSize",
    "MixUp",
    "Mosaic",
    "Noise",
    "Oversample",
    "RandomAffine",
    "RandomScaleCrop",
    "ReaderDataset",
    "Record",
    "SharedValue",
    "ToTensor",
    "build_dataloader",
    "build_transforms",
    "check_img_size",
    "collate",
    "ensure_synthetic",
    "find_wrappers",
    "generate_synthetic",
    "innermost_dataset",
    "iter_dataset_chain",
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
