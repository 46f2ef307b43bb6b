"""Label readers as a data config names them, registered in ``READERS``: wider_txt, retinaface_txt,
coco_json, voc_xml, yolo_txt and synthetic.

Each takes its format's config keys (paths as written in the config, resolved against the working
directory) and returns ``(records, LoadStats)``; ``facedet.data.dataset`` turns the result into a
``FaceDataset``. The parsing lives in ``facedet.data.formats`` (one module per format, with its
writer), the shared types and validation rules in ``facedet.data.records``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from facedet.data.formats import (
    read_coco_json,
    read_retinaface_txt,
    read_voc_xml,
    read_wider_txt,
    read_yolo_txt,
)
from facedet.data.records import LabelError, LoadStats, Record
from facedet.data.synthetic import RETINAFACE_LABELS, SPLITS, ensure_synthetic
from facedet.registry import READERS

Loaded = tuple[list[Record], LoadStats]


def existing(path: str | Path, what: str) -> Path:
    """Resolve against the working directory; a missing path is a user error with a hint."""
    p = Path(path).expanduser().absolute()
    if not p.exists():
        raise ValueError(
            f"{what} not found: {p} (relative paths resolve against the working directory {Path.cwd()}); "
            "point the config at your data, e.g. with the override data.root=/path/to/data"
        )
    return p


def _label_file_reader(read: Callable[[Path, Path], Loaded]) -> Callable[..., Loaded]:
    """The config reader of a format with one label file (``ann_file``) for an image folder."""

    def reader(*, ann_file: str, img_dir: str) -> Loaded:
        return read(existing(ann_file, "annotation file"), existing(img_dir, "image directory"))

    reader.__doc__ = read.__doc__
    return reader


# WIDER FACE official txt (``invalid`` faces ignored); RetinaFace ``label.txt`` (five landmarks);
# COCO json (every category a face, ``iscrowd`` ignored)
READERS.register("wider_txt")(_label_file_reader(read_wider_txt))
READERS.register("retinaface_txt")(_label_file_reader(read_retinaface_txt))
READERS.register("coco_json")(_label_file_reader(read_coco_json))


@READERS.register("voc_xml")
def voc_xml(*, ann_dir: str, img_dir: str, classes: list[str] | None = None) -> Loaded:
    """Pascal VOC xml files under ``ann_dir``; ``classes``: the object names that are faces (null =
    every object); ``difficult`` faces are ignored."""
    return read_voc_xml(existing(ann_dir, "annotation folder"), existing(img_dir, "image directory"), classes=classes)


@READERS.register("yolo_txt")
def yolo_txt(*, img_dir: str, label_dir: str | None = None, classes: list[int] | None = None,
             ignore_class: int | None = None) -> Loaded:
    """YOLO txt labels (normalised ``class cx cy w h`` [+ landmarks]); ``label_dir`` defaults to
    ``img_dir`` with its last ``images`` folder replaced by ``labels``; ``classes``: the class ids
    that are faces (null = all); ``ignore_class``: the class id of ignored faces (null = none)."""
    images = existing(img_dir, "image directory")
    labels = existing(label_dir, "label folder") if label_dir is not None else None
    return read_yolo_txt(images, labels, classes=classes, ignore_class=ignore_class)


@READERS.register("synthetic")
def synthetic(*, root: str, split: str = "train", num_train: int = 1200, num_val: int = 200, seed: int = 0) -> Loaded:
    """The generated cartoon-face set (``facedet.data.synthetic``): generated under ``root`` on first
    use (or when the parameters change), then read from its RetinaFace txt labels (boxes and every
    face's five points; the same boxes as its WIDER txt)."""
    if split not in SPLITS:
        raise ValueError(f"synthetic split must be one of {sorted(SPLITS)}, got {split!r}")
    base = ensure_synthetic(root, num_train=num_train, num_val=num_val, seed=seed)
    return read_retinaface_txt(base / split / RETINAFACE_LABELS, base / split / "images")


__all__ = [
    "LabelError",
    "LoadStats",
    "Record",
    "existing",
    "read_coco_json",
    "read_retinaface_txt",
    "read_voc_xml",
    "read_wider_txt",
    "read_yolo_txt",
]
