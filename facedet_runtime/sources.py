"""Images and videos to detect faces in: listing a source (an image, a folder searched recursively,
a video), reading images, and the ``detections.json`` entries of one image's detections.

Shared with facedet (``facedet.data.dataset.load_image``, ``facedet.inference.detect``), which
imports them from here, so both read and list files the same way.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")  # ordered: tried in turn
VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg"}


class ImageError(ValueError):
    """An image that cannot be used; ``reason`` is the LoadStats skip reason."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


def load_image(path: str | Path) -> np.ndarray:
    """HxWx3 uint8 RGB. EXIF orientation is ignored, so pixels match the header size readers use
    and the annotators' coordinates. Raises ImageError (a ValueError) naming the file when it cannot
    be decoded or is a truncated JPEG (which OpenCV would decode with a grey bottom, silently)."""
    try:
        buf = np.fromfile(str(path), np.uint8)  # imdecode also copes with non-ASCII paths
    except OSError as e:
        raise ImageError(f"cannot read image {path}: {e}", "missing_image") from e
    try:
        img = cv2.imdecode(buf, cv2.IMREAD_COLOR_RGB | cv2.IMREAD_IGNORE_ORIENTATION) if buf.size else None
    except cv2.error:  # some decoders raise rather than return None on corrupt data
        img = None
    if img is None:
        raise ImageError(f"cannot decode image {path} (corrupt or not an image)", "undecodable_image")
    # JPEG: entropy-coded data never contains FF D9 (0xFF is byte-stuffed), so a file without the
    # end-of-image marker near its end was cut off
    if buf[:2].tobytes() == b"\xff\xd8" and b"\xff\xd9" not in buf[-65536:].tobytes():
        raise ImageError(f"truncated JPEG {path} (no end-of-image marker)", "truncated_image")
    return img


def list_sources(source: str | Path) -> tuple[list[tuple[Path, str]], list[tuple[Path, str]]]:
    """(images, videos) as (path, name relative to the source) pairs, sorted."""
    src = Path(source).expanduser()
    if not src.exists():
        raise FileNotFoundError(f"source not found: {src}")
    files = sorted(p for p in src.rglob("*") if p.is_file()) if src.is_dir() else [src]
    base = src if src.is_dir() else src.parent
    images = [(p, p.relative_to(base).as_posix()) for p in files if p.suffix.lower() in IMAGE_SUFFIXES]
    videos = [(p, p.relative_to(base).as_posix()) for p in files if p.suffix.lower() in VIDEO_SUFFIXES]
    if not src.is_dir() and not images and not videos:
        raise ValueError(f"{src}: not an image ({', '.join(sorted(IMAGE_SUFFIXES))}) or a video "
                         f"({', '.join(sorted(VIDEO_SUFFIXES))})")
    return images, videos


def detection_entries(pred: dict[str, np.ndarray], boxes: np.ndarray | None = None,
                      landmarks: np.ndarray | None = None) -> list[dict[str, Any]]:
    """The ``detections.json`` entries of one image's detections (``boxes``/``landmarks``: smoothed
    ones instead of the prediction's): ``box`` [x1, y1, x2, y2], ``score``, and ``landmarks`` as
    x1, y1, ..., x5, y5 (the COCO results json's layout) when the model predicts points."""
    b = pred["boxes"] if boxes is None else boxes
    points = pred.get("landmarks") if landmarks is None else landmarks
    dets = [{"box": [round(float(v), 2) for v in box], "score": round(float(s), 4)}
            for box, s in zip(b, pred["scores"], strict=True)]
    if points is not None:
        for d, p in zip(dets, np.asarray(points).reshape(len(dets), -1), strict=True):
            d["landmarks"] = [round(float(v), 2) for v in p]
    return dets
