"""Detect faces in every image and video of a source with a ``FaceDetector`` (or anything with its
contract): the ``images`` / ``videos`` / ``skipped`` parts of facedet's ``detections.json``
(``facedet.inference.detect.run_detection``), without drawing.

An unreadable image in a folder is skipped, counted and reported (``skipped``); an unreadable single
source is an error naming it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from facedet_runtime.sources import detection_entries, list_sources, load_image

log = logging.getLogger(__name__)

Detect = Callable[[Sequence[np.ndarray]], list[dict[str, np.ndarray]]]


def _batches(items: list[Any], size: int) -> Iterator[list[Any]]:
    for i in range(0, len(items), max(1, size)):
        yield items[i : i + max(1, size)]


def detect_images(detector: Detect, images: list[tuple[Path, str]], *, batch_size: int = 8,
                  strict: bool = False) -> tuple[dict[str, Any], dict[str, str]]:
    """(results per image name, skipped name -> reason); with ``strict`` an unreadable image raises."""
    results: dict[str, Any] = {}
    skipped: dict[str, str] = {}
    for chunk in _batches(images, batch_size):
        loaded = []
        for path, name in chunk:
            try:
                loaded.append((name, load_image(path)))
            except ValueError as e:
                if strict:
                    raise
                skipped[name] = str(e)
                log.warning("skipped %s", e)
        for (name, img), pred in zip(loaded, detector([im for _, im in loaded]), strict=True):
            results[name] = {"width": img.shape[1], "height": img.shape[0], "detections": detection_entries(pred)}
    return results, skipped


def detect_video(detector: Detect, path: Path, *, batch_size: int = 8) -> dict[str, Any]:
    """{fps, width, height, frames: per frame its detections} of the video at ``path``."""
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise ValueError(f"cannot open video {path}")
    fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
    w, h = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
    frames: list[list[dict[str, Any]]] = []
    try:
        for batch in frame_batches(cap, batch_size):
            frames.extend(detection_entries(pred) for pred in detector(batch))
    finally:
        cap.release()
    return {"fps": fps, "width": w, "height": h, "frames": frames}


def frame_batches(cap: cv2.VideoCapture, batch_size: int) -> Iterator[list[np.ndarray]]:
    """The frames of an opened video as RGB arrays, ``batch_size`` at a time (the last batch may be
    shorter or empty)."""
    done = False
    while not done:
        batch = []
        while len(batch) < max(1, batch_size):
            ok, frame = cap.read()
            if not ok:
                done = True
                break
            batch.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
        yield batch


def detect_source(detector: Detect, source: str | Path, *, batch_size: int = 8) -> dict[str, Any]:
    """``{"images", "videos", "skipped"}`` for every image and video of ``source``."""
    images, videos = list_sources(source)
    single = Path(source).expanduser().is_file()
    results, skipped = detect_images(detector, images, batch_size=batch_size, strict=single)
    video_results = {}
    for path, name in videos:
        try:
            video_results[name] = detect_video(detector, path, batch_size=batch_size)
        except ValueError as e:
            if single:
                raise
            skipped[name] = str(e)
            log.warning("skipped %s", e)
    if not results and not video_results and not skipped:
        log.warning("no images or videos found in %s", source)
    return {"images": results, "videos": video_results, "skipped": skipped}
