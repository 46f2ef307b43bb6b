"""Annotation readers: one per label format, each returning ``(records, LoadStats)``.

A ``Record`` holds one image's ground truth in original pixels. Readers clip boxes to the image,
drop boxes with no area and skip missing images, and count every such change by reason in
``LoadStats`` (never silently: "AP 0 with no hint why" often starts with labels lost here).
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

log = logging.getLogger(__name__)


@dataclass
class Record:
    """Ground truth of one image, in original pixels."""

    image_path: Path
    image_id: str  # file name relative to the image directory
    boxes: np.ndarray  # (N, 4) float32 xyxy
    ignore: np.ndarray  # (N,) bool
    landmarks: np.ndarray  # (N, 5, 2) float32, NaN where absent
    orig_size: tuple[int, int]  # (H, W)


@dataclass
class LoadStats:
    """What a reader loaded and what it dropped (by reason)."""

    source: str = ""
    images: int = 0
    faces: int = 0  # kept faces, ignored ones included
    ignored: int = 0
    clipped: int = 0  # kept boxes that were clipped to the image
    missing_images: int = 0
    dropped: Counter = field(default_factory=Counter)  # reason -> number of boxes

    def summary(self) -> str:
        """One line for the log."""
        drops = ", ".join(f"{n} {reason}" for reason, n in sorted(self.dropped.items())) or "none"
        return (
            f"{self.source}: {self.images} images, {self.faces} faces ({self.ignored} ignored, "
            f"{self.clipped} clipped to the image); dropped boxes: {drops}; "
            f"missing images: {self.missing_images}"
        )


def _image_size(path: Path) -> tuple[int, int]:
    """(H, W) from the image header only (PIL reads no pixels for this)."""
    with Image.open(path) as im:
        w, h = im.size
    return h, w


def _make_record(
    stats: LoadStats,
    path: Path,
    image_id: str,
    xywh: np.ndarray,
    ignore: np.ndarray,
    size: tuple[int, int],
    landmarks: np.ndarray | None = None,
) -> Record:
    """Clip xywh boxes to the image, drop empty ones (counted by reason), build the Record."""
    xywh = np.asarray(xywh, np.float32).reshape(-1, 4)
    ignore = np.asarray(ignore, bool).reshape(-1)
    lm = np.full((len(xywh), 5, 2), np.nan, np.float32) if landmarks is None else landmarks.astype(np.float32)
    h, w = size
    boxes = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], 1)
    clipped = np.clip(boxes, 0, np.array([w, h, w, h], np.float32))
    nonpositive = (xywh[:, 2] <= 0) | (xywh[:, 3] <= 0)
    outside = ~nonpositive & ((clipped[:, 2] <= clipped[:, 0]) | (clipped[:, 3] <= clipped[:, 1]))
    keep = ~(nonpositive | outside)
    counts = {"nonpositive_size": int(nonpositive.sum()), "outside_image": int(outside.sum())}
    stats.dropped.update({reason: n for reason, n in counts.items() if n})  # only reasons that occurred
    stats.clipped += int((keep & np.any(clipped != boxes, 1)).sum())
    stats.images += 1
    stats.faces += int(keep.sum())
    stats.ignored += int((keep & ignore).sum())
    return Record(path, image_id, clipped[keep], ignore[keep], lm[keep], (int(h), int(w)))


def _numbers(tokens: list[str], where: str) -> np.ndarray:
    try:
        return np.array([float(t) for t in tokens], np.float32)
    except ValueError:
        raise ValueError(f"{where}: expected numbers 'x y w h ...', got {' '.join(tokens)!r}") from None


def _is_zero_line(line: str) -> bool:
    """The line of zeros that official WIDER files put after a 0-face image."""
    tokens = line.split()
    try:
        return len(tokens) >= 4 and all(float(t) == 0 for t in tokens)
    except ValueError:
        return False


def read_wider_txt(ann_file: str | Path, img_dir: str | Path) -> tuple[list[Record], LoadStats]:
    """Read WIDER FACE txt: a file name line, a face count line, then one ``x y w h blur expression
    illumination invalid occlusion pose`` line per face (extra columns optional). ``invalid`` = 1
    makes the face ``ignore``. Malformed input raises a ValueError naming the file and line."""
    ann_file, img_dir = Path(ann_file), Path(img_dir)
    lines = ann_file.read_text().splitlines()
    stats = LoadStats(source=f"wider_txt {ann_file}")
    records: list[Record] = []
    i = 0
    while i < len(lines):
        name = lines[i].strip()
        if not name:  # tolerate blank lines (e.g. at the end)
            i += 1
            continue
        where = f"{ann_file}:{i + 2}"
        if i + 1 >= len(lines):
            raise ValueError(f"{where}: file ends after image name {name!r}; expected a face count")
        try:
            count = int(lines[i + 1].strip())
        except ValueError:
            raise ValueError(
                f"{where}: expected a face count for {name!r}, got {lines[i + 1].strip()!r}"
            ) from None
        if count < 0:
            raise ValueError(f"{where}: negative face count {count} for {name!r}")
        i += 2
        if count == 0 and i < len(lines) and _is_zero_line(lines[i]):
            i += 1  # official files follow a 0-face image with one line of zeros
        if i + count > len(lines):
            raise ValueError(f"{ann_file}:{len(lines) + 1}: file ends inside the {count} faces of {name!r}")
        rows = np.zeros((count, 8), np.float32)
        for j in range(count):
            tokens = lines[i + j].split()
            if len(tokens) < 4:
                raise ValueError(
                    f"{ann_file}:{i + j + 1}: expected at least 4 numbers 'x y w h', got {lines[i + j]!r}"
                )
            vals = _numbers(tokens, f"{ann_file}:{i + j + 1}")[:8]
            rows[j, : len(vals)] = vals
        i += count
        path = img_dir / name
        if not path.is_file():
            stats.missing_images += 1
            continue
        try:
            size = _image_size(path)
        except OSError:
            stats.dropped["unreadable_image"] += count
            stats.missing_images += 1
            continue
        records.append(_make_record(stats, path, name, rows[:, :4], rows[:, 7] == 1, size))
    return records, stats


def read_coco_json(ann_file: str | Path, img_dir: str | Path) -> tuple[list[Record], LoadStats]:
    """Read COCO detection json; every category is a face. ``iscrowd`` = 1 (or ``ignore`` = 1)
    makes a face ``ignore``; 5-point ``keypoints`` become landmarks (NaN where visibility is 0).
    Images without annotations are kept with 0 faces."""
    ann_file, img_dir = Path(ann_file), Path(img_dir)
    try:
        data: dict[str, Any] = json.loads(ann_file.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{ann_file}:{e.lineno}: not valid JSON ({e.msg})") from None
    if "images" not in data:
        raise ValueError(f"{ann_file}: not a COCO detection file (no 'images' list)")
    stats = LoadStats(source=f"coco_json {ann_file}")
    by_image: dict[Any, list[dict[str, Any]]] = {img["id"]: [] for img in data["images"]}
    for ann in data.get("annotations", []):
        if ann.get("image_id") not in by_image:
            stats.dropped["unknown_image_id"] += 1
            continue
        by_image[ann["image_id"]].append(ann)
    records: list[Record] = []
    for img in data["images"]:
        anns, name = by_image[img["id"]], img["file_name"]
        path = img_dir / name
        if not path.is_file():
            stats.missing_images += 1
            continue
        size = (
            (int(img["height"]), int(img["width"]))
            if "height" in img and "width" in img
            else _image_size(path)
        )
        xywh = np.array([a["bbox"] for a in anns], np.float32).reshape(-1, 4)
        ignore = np.array([bool(a.get("iscrowd", 0) or a.get("ignore", 0)) for a in anns], bool)
        lm = np.full((len(anns), 5, 2), np.nan, np.float32)
        for k, a in enumerate(anns):
            kp = a.get("keypoints")
            if kp is not None and len(kp) == 15:
                kp = np.asarray(kp, np.float32).reshape(5, 3)
                lm[k] = np.where(kp[:, 2:] > 0, kp[:, :2], np.nan)
        records.append(_make_record(stats, path, name, xywh, ignore, size, lm))
    return records, stats
