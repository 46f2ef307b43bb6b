"""Convert face labels between formats (``tools/convert.py``): wider, retinaface, coco, voc, yolo.

Images are not copied: the written labels refer to the same image folder (image ids are paths
relative to it). A conversion that would lose information the target format cannot hold (ignore
flags, landmarks, WIDER attributes) is refused with what would be lost, unless ``allow_loss``;
then the losses are listed in the report. Boxes round-trip exactly (writers print shortest exact
floats and widths as exact float64 differences).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from facedet.data.formats import FORMATS, YOLO_LANDMARK_LAYOUTS
from facedet.data.records import WIDER_ATTRIBUTES, LoadStats, Record

_INVALID = WIDER_ATTRIBUTES.index("invalid")


@dataclass
class ConversionReport:
    stats: LoadStats
    images: int
    faces: int
    lost: dict[str, int] = field(default_factory=dict)  # what the target format could not hold

    def summary(self) -> str:
        lost = ", ".join(f"{n} {what}" for what, n in self.lost.items()) or "nothing"
        return f"wrote {self.images} images, {self.faces} faces; lost: {lost}"


def losses(records: Sequence[Record], fmt_name: str, *, ignore_class: int | None = 1) -> dict[str, int]:
    """What writing ``records`` as ``fmt_name`` would lose, by kind (faces counted)."""
    f = FORMATS[fmt_name]
    out: dict[str, int] = {}
    ignored = sum(int(np.asarray(r.ignore).sum()) for r in records)
    if ignored and (not f.ignore or (fmt_name == "yolo" and ignore_class is None)):
        out["ignore flags (written as faces)"] = ignored
    with_lm = sum(int(np.isfinite(r.landmarks).any((1, 2)).sum()) for r in records)
    if with_lm and not f.landmarks:
        out["faces' landmarks"] = with_lm
    attrs = 0
    for r in records:
        if r.attributes is not None:
            a = np.delete(r.attributes, _INVALID, axis=1)  # invalid travels as the ignore flag
            attrs += int((a > 0).any(1).sum())
    if attrs and not f.attributes:
        out["faces' WIDER attributes"] = attrs
    return out


def read_labels(fmt_name: str, ann: str | Path, img_dir: str | Path, **opts: Any) -> tuple[list[Record], LoadStats]:
    """Read labels of format ``fmt_name`` (``ann``: the file, or the folder for voc/yolo)."""
    if fmt_name not in FORMATS:
        raise ValueError(f"unknown label format {fmt_name!r}; known: {', '.join(FORMATS)}")
    return FORMATS[fmt_name].read(Path(ann), Path(img_dir), **opts)


def write_labels(records: Sequence[Record], fmt_name: str, out: str | Path, **opts: Any) -> None:
    if fmt_name not in FORMATS:
        raise ValueError(f"unknown label format {fmt_name!r}; known: {', '.join(FORMATS)}")
    FORMATS[fmt_name].write(records, Path(out), **opts)


def convert(
    src_format: str, src: str | Path, img_dir: str | Path, dst_format: str, out: str | Path, *,
    allow_loss: bool = False, yolo_ignore_class: int | None = 1, voc_classes: Sequence[str] | None = None,
    yolo_landmarks: str = "xy",
) -> ConversionReport:
    """Read ``src`` (format ``src_format``, images in ``img_dir``), write ``out`` as ``dst_format``.
    Raises ValueError listing what would be lost unless ``allow_loss``. ``yolo_landmarks``: the
    layout of written YOLO points (``xy`` 15 columns, ``xyv`` 20; reading tells them apart itself)."""
    if yolo_landmarks not in YOLO_LANDMARK_LAYOUTS:  # before reading: a typo should not cost a long read
        raise ValueError(f"YOLO landmark layout must be one of {', '.join(YOLO_LANDMARK_LAYOUTS)}, "
                         f"got {yolo_landmarks!r}")
    read_opts: dict[str, Any] = {}
    if src_format == "yolo":
        read_opts["ignore_class"] = yolo_ignore_class
    if src_format == "voc" and voc_classes is not None:
        read_opts["classes"] = list(voc_classes)
    records, stats = read_labels(src_format, src, img_dir, **read_opts)
    lost = losses(records, dst_format, ignore_class=yolo_ignore_class)
    if lost and not allow_loss:
        what = "; ".join(f"{n} {k}" for k, n in lost.items())
        raise ValueError(f"{dst_format} cannot hold everything in {src}: {what}. "
                         "Pass --allow-loss to convert anyway.")
    write_opts = {"ignore_class": yolo_ignore_class, "landmarks": yolo_landmarks} if dst_format == "yolo" else {}
    write_labels(records, dst_format, out, **write_opts)
    return ConversionReport(stats, len(records), sum(len(r.boxes) for r in records), lost)
