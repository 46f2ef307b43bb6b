"""The shared half of a bench adapter (the protocol in bench/peers/README.md): command line, timing, OUT.json.

An adapter script (``bench/peers/<name>.py``) runs in its detector's own virtual environment and imports
this file as a sibling module, so it may use only numpy, OpenCV and the standard library. The adapter
builds a ``detect(image_bgr) -> Detections`` callable; :func:`run` times it and writes the OUT.json
that bench/deploy.py reads:

- ``latency_ms``: batch 1 on the first image of the list, ``detect`` only (pre-processing, inference,
  post-processing; no file decode), ``--latency-repeats`` samples after ``--warmup`` calls;
- ``seconds_total``: one pass over every image of the list including the decode (``cv2.imread``), batch 1;
- ``detections`` (and ``points`` when the detector gives 5 landmarks): from that pass, original pixels.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import cv2
import numpy as np


@dataclass
class Detections:
    """One image's detections in original pixels: boxes (K,4) xyxy, scores (K,), points (K,5,2) or None."""

    boxes: np.ndarray
    scores: np.ndarray
    points: np.ndarray | None = None


# facedet's rows keep scores down to this when --score-thresh is not given: low enough for AP (the
# precision-recall tail), high enough that NMS is not timed on thousands of near-zero candidates
FACEDET_SCORE_THRESH = 0.02


@dataclass
class AdapterInfo:
    """What OUT.json says about the detector besides its detections."""

    name: str
    input: str  # how the image reaches the network, e.g. "longer side 320, no padding"
    threads_note: str  # what the thread count was applied to
    distributions: Sequence[str]  # pip distributions whose versions are recorded
    extra: dict = field(default_factory=dict)  # e.g. model file, score threshold, variant


def parse_args(description: str, argv: Sequence[str] | None = None, variants: Sequence[str] = ()) -> argparse.Namespace:
    """The protocol's command line (plus ``--score-thresh``: None keeps the adapter's low default)."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--images", type=Path, required=True, help="text file: one absolute image path per line")
    p.add_argument("--size", type=int, required=True, help="input size S (longer side), ignored by fixed-input models")
    p.add_argument("--threads", type=int, required=True, help="intra-op threads for the detector's runtime")
    p.add_argument("--out", type=Path, required=True, help="OUT.json to write")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--latency-repeats", type=int, default=50)
    p.add_argument("--model", type=Path, default=None, help="a model file instead of the one the package ships")
    p.add_argument("--variant", default=variants[0] if variants else None, choices=list(variants) or None)
    p.add_argument("--score-thresh", type=float, default=None, help="lowest score kept (default: the adapter's)")
    args = p.parse_args(argv)
    if args.size <= 0 or args.threads <= 0:
        p.error("--size and --threads must be positive")
    if args.model is not None and not args.model.is_file():
        p.error(f"--model {args.model}: no such file")
    return args


def read_list(path: Path) -> list[str]:
    """The image paths of LIST.txt (blank lines skipped); a missing image is an error naming its line."""
    if not path.is_file():
        raise SystemExit(f"--images {path}: no such file")
    paths = []
    for lineno, line in enumerate(path.read_text().splitlines(), 1):
        line = line.strip()
        if not line:
            continue
        if not os.path.isfile(line):
            raise SystemExit(f"{path}:{lineno}: no such image {line!r}")
        paths.append(line)
    if not paths:
        raise SystemExit(f"{path}: no image paths")
    return paths


def read_bgr(path: str) -> np.ndarray:
    """Decode an image as OpenCV does (HxWx3 uint8 BGR) but without applying its EXIF orientation:
    the labels are in the stored pixels, as facedet's data sets read them. An unreadable file is an
    error naming it."""
    img = cv2.imread(path, cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    if img is None:
        raise SystemExit(f"cannot decode image {path!r}")
    return img


def resize_longer(img: np.ndarray, size: int) -> tuple[np.ndarray, float]:
    """Resize so the longer side is ``size`` (aspect kept); returns the image and the scale applied."""
    h, w = img.shape[:2]
    scale = size / max(h, w)
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    if (nw, nh) == (w, h):
        return img, 1.0
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    return cv2.resize(img, (nw, nh), interpolation=interp), scale


def versions(distributions: Sequence[str]) -> dict[str, str]:
    """Installed versions of the given pip distributions (and python); a missing one reads 'not installed'."""
    out = {"python": platform.python_version()}
    for dist in distributions:
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "not installed"
    return out


def _rows(det: Detections) -> tuple[list[list[float]], list[list[list[float]]] | None]:
    boxes = np.asarray(det.boxes, dtype=np.float64).reshape(-1, 4)
    scores = np.asarray(det.scores, dtype=np.float64).reshape(-1)
    order = np.argsort(-scores, kind="stable")
    rows = [[*map(float, boxes[i]), float(scores[i])] for i in order]
    if det.points is None:
        return rows, None
    pts = np.asarray(det.points, dtype=np.float64).reshape(-1, 5, 2)
    return rows, [[[None if np.isnan(v) else float(v) for v in p] for p in pts[i]] for i in order]


def from_facedet(pred: dict[str, np.ndarray]) -> Detections:
    """A facedet ``Predictor`` / runtime result (``boxes``, ``scores``, optional ``landmarks``) as Detections."""
    return Detections(pred["boxes"], pred["scores"], pred.get("landmarks"))


def run(args: argparse.Namespace, info: AdapterInfo, detect: Callable[[np.ndarray], Detections]) -> dict:
    """Time ``detect`` as the protocol says, run it over the list, write and return OUT.json's content."""
    paths = read_list(args.images)
    first = read_bgr(paths[0])
    for _ in range(args.warmup):
        detect(first)
    latency = []
    for _ in range(args.latency_repeats):
        t0 = time.perf_counter()
        detect(first)
        latency.append((time.perf_counter() - t0) * 1000.0)

    detections: dict[str, list] = {}
    points: dict[str, list] = {}
    t0 = time.perf_counter()
    for path in paths:
        rows, pts = _rows(detect(read_bgr(path)))
        detections[path] = rows
        if pts is not None:
            points[path] = pts
    seconds_total = time.perf_counter() - t0

    out = {
        "name": info.name,
        "versions": versions(info.distributions),
        "input": info.input,
        "threads": args.threads,
        "threads_note": info.threads_note,
        "size": args.size,
        **info.extra,
        "detections": detections,
        "latency_ms": latency,
        "seconds_total": seconds_total,
        "images": len(paths),
    }
    if points:
        out["points"] = points
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out))
    n_det = sum(len(v) for v in detections.values())
    med = float(np.median(latency)) if latency else float("nan")
    print(f"{info.name}: {len(paths)} images, {n_det} detections, latency median {med:.2f} ms -> {args.out}",
          file=sys.stderr)
    return out


def ort_threads_note(threads: int) -> str:
    """How an ONNX Runtime adapter applies ``--threads`` (the OUT.json ``threads_note``)."""
    return f"onnxruntime intra_op_num_threads={threads} inter_op=1; cv2.setNumThreads({threads})"


def main(doc: str, build: Callable[[argparse.Namespace], tuple[AdapterInfo, Callable[[np.ndarray], Detections]]],
         argv: Sequence[str] | None = None, variants: Sequence[str] = ()) -> int:
    """An adapter script's whole ``main``: the command line (described by ``doc``'s first line),
    ``build(args) -> (info, detect)``, then :func:`run`; the exit status."""
    args = parse_args(doc.splitlines()[0], argv, variants)
    info, detect = build(args)
    run(args, info, detect)
    return 0
