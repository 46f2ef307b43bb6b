"""Run a Predictor (or anything with its contract, e.g. ``facedet_runtime.FaceDetector``) over
images, folders and videos; write annotated media, the detections and,
optionally, aligned face crops.

``run_detection`` returns (and the CLI writes as ``detections.json``)::

    {"images": {"<path under the source>": {"width", "height", "detections": [
        {"box": [x1, y1, x2, y2], "score", "landmarks": [x1, y1, ..., x5, y5], "crop": "crops/<name>_<k>.png"}]}},
     "videos": {"<path>": {"fps", "width", "height", "frames": [[{"box", "score", "landmarks"}, ...], ...]}},
     "skipped": {"<path>": "<reason>"}}

Boxes and points are in original pixels; ``landmarks`` (left eye, right eye, nose tip, left and
right mouth corner; left = the image's left) only when the model predicts them, ``crop`` only when
crops were asked for (``crop_size``) and written. An unreadable image in a folder is skipped,
counted and reported (``skipped``); an unreadable single source is an error.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from facedet.inference.align import align_face
from facedet.inference.draw import draw_detections
from facedet.inference.smoothing import BoxSmoother
from facedet_runtime.run import Detect, frame_batches
from facedet_runtime.sources import detection_entries, list_sources, load_image

log = logging.getLogger(__name__)

def _batches(items: list[Any], size: int) -> Iterator[list[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def write_crops(image: np.ndarray, landmarks: np.ndarray, name: str, crops_dir: Path, size: int) -> list[str | None]:
    """Write the aligned ``size`` x ``size`` crop of each face (``landmarks`` (K, 5, 2)) of the RGB
    ``image`` as ``crops_dir/<name without suffix>_<k>.png``; the paths relative to the crops
    folder's parent (None where a face's points fix no transform)."""
    written: list[str | None] = []
    for k, points in enumerate(np.asarray(landmarks).reshape(-1, 5, 2)):
        crop = align_face(image, points, size)
        if crop is None:
            written.append(None)
            continue
        out = crops_dir / f"{Path(name).with_suffix('').as_posix()}_{k}.png"
        out.parent.mkdir(parents=True, exist_ok=True)
        if not cv2.imwrite(str(out), cv2.cvtColor(crop, cv2.COLOR_RGB2BGR)):
            raise OSError(f"could not write {out}")
        written.append(out.relative_to(crops_dir.parent).as_posix())
    return written


def _load(chunk: list[tuple[Path, str]], skipped: dict[str, str], strict: bool) -> list[tuple[str, np.ndarray]]:
    """The readable images of ``chunk``; the others are recorded in ``skipped`` (or raise, ``strict``)."""
    loaded = []
    for path, name in chunk:
        try:
            loaded.append((name, load_image(path)))
        except ValueError as e:
            if strict:
                raise
            skipped[name] = str(e)
            log.warning("skipped %s", e)
    return loaded


def detect_images(predictor: Detect, images: list[tuple[Path, str]], out_dir: Path | None, *,
                  batch_size: int = 8, line_width: int = 2, strict: bool = False,
                  crops_dir: Path | None = None, crop_size: int = 112) -> tuple[dict, dict]:
    """Detections per image (and annotated copies under ``out_dir`` when given; aligned crops of
    the faces with landmarks under ``crops_dir`` when given); returns (results, skipped). With
    ``strict`` an unreadable image raises instead of being skipped."""
    results: dict[str, Any] = {}
    skipped: dict[str, str] = {}
    for chunk in _batches(images, max(1, batch_size)):
        loaded = _load(chunk, skipped, strict)
        for (name, img), pred in zip(loaded, predictor([im for _, im in loaded]), strict=True):
            dets = detection_entries(pred)
            if crops_dir is not None and pred.get("landmarks") is not None:
                for d, crop in zip(dets, write_crops(img, pred["landmarks"], name, crops_dir, crop_size), strict=True):
                    if crop is not None:
                        d["crop"] = crop
            results[name] = {"width": img.shape[1], "height": img.shape[0], "detections": dets}
            if out_dir is not None:
                out = out_dir / name
                out.parent.mkdir(parents=True, exist_ok=True)
                drawn = draw_detections(img, pred["boxes"], pred["scores"], line_width=line_width,
                                        landmarks=pred.get("landmarks"))
                if not cv2.imwrite(str(out), cv2.cvtColor(drawn, cv2.COLOR_RGB2BGR)):
                    raise OSError(f"could not write {out}")
    return results, skipped


def detect_video(predictor: Detect, path: Path, out_path: Path | None, *, smoother: BoxSmoother | None = None,
                 batch_size: int = 8, line_width: int = 2) -> dict[str, Any]:
    """Detections per frame of the video at ``path`` (boxes and points optionally smoothed over
    time), and an annotated copy at ``out_path`` (mp4v) when given. No crops: a crop per face per
    frame is rarely wanted; run images for that."""
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise ValueError(f"cannot open video {path}")
    fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
    w, h = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
    writer = None
    if out_path is not None:
        out_path.parent.mkdir(parents=True, exist_ok=True)
        writer = cv2.VideoWriter(str(out_path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
        if not writer.isOpened():
            cap.release()
            raise OSError(f"cannot write video {out_path} (no mp4v encoder in this OpenCV build?)")
    if smoother is not None:
        smoother.reset()
    frames: list[list[dict[str, Any]]] = []
    try:
        for batch in frame_batches(cap, batch_size):
            for img, pred in zip(batch, predictor(batch), strict=True):
                boxes, points = pred["boxes"], pred.get("landmarks")
                if smoother is not None:
                    boxes, points = smoother.smooth(boxes, points)
                frames.append(detection_entries(pred, boxes, points))
                if writer is not None:
                    drawn = draw_detections(img, boxes, pred["scores"], line_width=line_width, landmarks=points)
                    writer.write(cv2.cvtColor(drawn, cv2.COLOR_RGB2BGR))
    finally:
        cap.release()
        if writer is not None:
            writer.release()
    return {"fps": fps, "width": w, "height": h, "frames": frames}


def run_detection(predictor: Detect, source: str | Path, out_dir: str | Path, *, save_media: bool = True,
                  smoother: BoxSmoother | None = None, batch_size: int = 8, line_width: int = 2,
                  crop_size: int | None = None) -> dict[str, Any]:
    """Detect faces in every image and video of ``source``; annotated media go to ``out_dir``, and
    with ``crop_size`` the aligned crops of the images' faces to ``out_dir/crops``."""
    out_dir = Path(out_dir)
    images, videos = list_sources(source)
    src_dir = Path(source) if Path(source).is_dir() else Path(source).parent
    if save_media and out_dir.resolve() == src_dir.resolve():
        raise ValueError(f"the output folder {out_dir} is the source folder: annotated copies would replace the "
                         "originals; give out=<another folder>")
    media_dir = out_dir if save_media else None
    single = Path(source).is_file()
    results, skipped = detect_images(predictor, images, media_dir, batch_size=batch_size, line_width=line_width,
                                     strict=single, crops_dir=out_dir / "crops" if crop_size else None,
                                     crop_size=crop_size or 112)
    video_results = {}
    for path, name in videos:
        out = out_dir / Path(name).with_suffix(".mp4") if save_media else None
        try:
            video_results[name] = detect_video(predictor, path, out, smoother=smoother, batch_size=batch_size,
                                               line_width=line_width)
        except ValueError as e:
            if single:
                raise
            skipped[name] = str(e)
            log.warning("skipped %s", e)
    if not results and not video_results and not skipped:
        log.warning("no images or videos found in %s", source)
    return {"images": results, "videos": video_results, "skipped": skipped}
