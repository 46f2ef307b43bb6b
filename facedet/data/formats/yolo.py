"""YOLO txt: one ``.txt`` per image (same relative path, under a ``labels`` folder beside
``images``), one line per face: ``class cx cy w h`` normalised to [0, 1] by the image size.

Optional landmarks after the box, normalised too, in either face layout (``LANDMARK_LAYOUTS``):
``xy``, 10 numbers ``lx ly`` per point (yolov5-face's 15 columns; ``-1 -1`` = absent), or ``xyv``, 15
numbers ``lx ly v`` (yolov7-face, yolov8-face and ultralytics pose's 20 columns; ``v <= 0`` = absent,
written as ``0 0 0``). Absence is per point in both. Every class is a face
unless ``classes`` lists those that are (others are dropped and counted); ``ignore_class`` marks
``ignore`` faces (facedet's converter writes them as class 1). An image without a label file has
no faces (counted as a note); a label file without an image is counted as a missing image.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from facedet.data.records import (
    LabelError,
    LoadStats,
    Record,
    fmt,
    landmarks_from_points,
    list_images,
    make_record,
    parse_numbers,
    read_lines,
    resolve_image,
)

LANDMARK_LAYOUTS = ("xy", "xyv")  # 15 or 20 columns per face; see the module docstring
_PIXEL_UNITS = 1.5  # normalised values above this mean the file is in pixels: an error, not a clip


def default_label_dir(img_dir: Path) -> Path:
    """Ultralytics' rule: the last ``images`` folder of the path replaced by ``labels``."""
    parts = list(img_dir.parts)
    if "images" not in parts:
        raise LabelError(f"{img_dir}: cannot derive the labels folder (no 'images' in the path); set label_dir")
    k = len(parts) - 1 - parts[::-1].index("images")
    return Path(*parts[:k], "labels", *parts[k + 1 :])


def _parse_file(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """-> classes (N,), boxes cx cy w h (N, 4), landmark xy (N, 5, 2), landmark absent (N, 5); normalised."""
    cls, boxes, xy, absent = [], [], [], []
    for lineno, line in enumerate(read_lines(path), 1):
        tokens = line.split()
        if not tokens:
            continue
        where = f"{path}:{lineno}"
        if len(tokens) not in (5, 15, 20):
            raise LabelError(
                f"{where}: expected 'class cx cy w h' (5 numbers), + 10 landmark values (15) or + 15 "
                f"landmark values with visibility (20); got {len(tokens)}"
            )
        vals = parse_numbers(tokens, where)
        if vals[0] != int(vals[0]) or vals[0] < 0:
            raise LabelError(f"{where}: the class must be a non-negative integer, got {tokens[0]!r}")
        coords = vals[1:] if len(vals) != 20 else np.concatenate([vals[1:5], vals[5:].reshape(5, 3)[:, :2].ravel()])
        if np.any(coords > _PIXEL_UNITS):
            raise LabelError(
                f"{where}: YOLO coordinates must be normalised to [0, 1] by the image size; got "
                f"{coords.max():g} (pixel units? then use the wider_txt, coco_json or voc_xml format)"
            )
        cls.append(int(vals[0]))
        boxes.append(vals[1:5])
        if len(vals) == 5:
            xy.append(np.zeros((5, 2)))
            absent.append(np.ones(5, bool))
        elif len(vals) == 15:
            p = vals[5:].reshape(5, 2)
            xy.append(p)
            absent.append((p == -1).all(1))
        else:
            p = vals[5:].reshape(5, 3)
            xy.append(p[:, :2])
            absent.append(p[:, 2] <= 0)
    n = len(cls)
    return (np.array(cls, np.int64), np.array(boxes, np.float64).reshape(n, 4),
            np.array(xy, np.float64).reshape(n, 5, 2), np.array(absent, bool).reshape(n, 5))


def _count_lines(path: Path) -> int:
    try:
        return sum(1 for line in read_lines(path) if line.strip())
    except LabelError:
        return 0


def read_yolo_txt(
    img_dir: str | Path,
    label_dir: str | Path | None = None,
    *,
    classes: Sequence[int] | None = None,
    ignore_class: int | None = None,
) -> tuple[list[Record], LoadStats]:
    """Read the images under ``img_dir`` and their label files -> (records, stats). Malformed lines
    (including pixel units) raise ``LabelError`` naming the file and line."""
    img_dir = Path(img_dir)
    label_dir = default_label_dir(img_dir) if label_dir is None else Path(label_dir)
    stats = LoadStats(source=f"yolo_txt {label_dir}")
    wanted = None if classes is None else {int(c) for c in classes}
    records: list[Record] = []
    used: set[Path] = set()
    for path in list_images(img_dir):
        rel = path.relative_to(img_dir)
        label = label_dir / rel.with_suffix(".txt")
        used.add(label)
        if label.is_file():
            cls, cxcywh, xy, absent = _parse_file(label)
        else:
            stats.notes["images without a label file (no faces)"] += 1
            cls, cxcywh = np.zeros(0, np.int64), np.zeros((0, 4))
            xy, absent = np.zeros((0, 5, 2)), np.ones((0, 5), bool)
        keep = np.ones(len(cls), bool)
        if wanted is not None:
            keep = np.isin(cls, list(wanted)) | (cls == ignore_class)
            if (~keep).any():
                stats.dropped["class_not_listed"] += int((~keep).sum())
                stats.examples.setdefault("class_not_listed", f"{label}: class {cls[~keep][0]}")
        size = resolve_image(stats, path, int(keep.sum()))
        if size is None:
            continue
        h, w = size
        scale = np.array([w, h], np.float64)
        c, wh = cxcywh[keep, :2] * scale, cxcywh[keep, 2:] * scale
        boxes = np.concatenate([c - wh / 2, c + wh / 2], 1)
        lm = landmarks_from_points(xy[keep] * scale, absent[keep])
        records.append(
            make_record(stats, path, rel.as_posix(), boxes, cls[keep] == ignore_class, size, lm, box_format="xyxy")
        )
    if label_dir.is_dir():
        for label in sorted(label_dir.rglob("*.txt")):
            # labelImg writes a classes.txt; a folder named *.txt is no label file
            if label not in used and label.name != "classes.txt" and label.is_file():
                stats.skip_image("missing_image", _count_lines(label), f"{label} (no image for this label file)")
    return records, stats


def _point_columns(lm: np.ndarray, w: int, h: int, layout: str) -> list[str]:
    """The landmark columns of one face (``lm`` (5, 2) pixels, NaN absent) in ``layout``."""
    cols: list[str] = []
    for x, y in lm.astype(np.float64):
        absent = bool(np.isnan(x) or np.isnan(y))
        if layout == "xy":
            cols += ["-1", "-1"] if absent else [fmt(x / w), fmt(y / h)]
        else:  # v = 2: labelled and visible (COCO); a point facedet has is a labelled point
            cols += ["0", "0", "0"] if absent else [fmt(x / w), fmt(y / h), "2"]
    return cols


def write_yolo_txt(records: Sequence[Record], out_dir: str | Path, *, ignore_class: int | None = 1,
                   landmarks: str = "xy") -> None:
    """One ``.txt`` per record under ``out_dir`` (class 0, or ``ignore_class`` for ignored faces);
    when any face of the set has points, every face gets the landmark columns of layout ``landmarks``
    (``xy``: 15 columns, ``-1 -1`` absent; ``xyv``: 20 columns, ``0 0 0`` absent)."""
    if landmarks not in LANDMARK_LAYOUTS:
        raise ValueError(f"YOLO landmark layout must be one of {', '.join(LANDMARK_LAYOUTS)}, got {landmarks!r}")
    out_dir = Path(out_dir)
    with_lm = any(np.isfinite(r.landmarks).any() for r in records)
    for r in records:
        h, w = r.orig_size
        scale = np.array([w, h], np.float64)
        b = r.boxes.astype(np.float64)
        c, wh = (b[:, :2] + b[:, 2:]) / 2 / scale, (b[:, 2:] - b[:, :2]) / scale
        lines = []
        for k in range(len(b)):
            cls = ignore_class if r.ignore[k] and ignore_class is not None else 0
            cols = [str(cls)] + [fmt(v) for v in (*c[k], *wh[k])]
            if with_lm:
                cols += _point_columns(r.landmarks[k], w, h, landmarks)
            lines.append(" ".join(cols))
        path = out_dir / Path(r.image_id).with_suffix(".txt")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(f"{line}\n" for line in lines))
