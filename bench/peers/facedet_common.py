"""The adapter side of the bench protocol (docs: bench/peers/README.md, bench/deploy.py) for facedet's
own rows: the command line, the timing loops and OUT.json. Imports only numpy, OpenCV and the
standard library, so the torch-free runtime adapter stays torch-free.

``run(detect, args, ...)``: ``detect(image)`` takes one HxWx3 uint8 RGB image and returns
``{"boxes": (K, 4) xyxy original pixels, "scores": (K,)[, "landmarks": (K, 5, 2)]}``.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np

# what bench/deploy.py asks of every adapter, with the protocol's defaults
DEFAULT_WARMUP = 5
DEFAULT_REPEATS = 50
# low enough for AP (the precision-recall tail), high enough that NMS is not timed on thousands of
# near-zero candidates: the protocol's example, the same for facedet's rows and its peers'
DEFAULT_SCORE_THRESH = 0.02


def parser(doc: str) -> argparse.ArgumentParser:
    """The protocol's command line plus ``--score-thresh``."""
    ap = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    ap.add_argument("--images", required=True, help="text file: one absolute image path per line")
    ap.add_argument("--size", type=int, required=True, help="input size: longer side, letterboxed to SxS")
    ap.add_argument("--threads", type=int, required=True, help="intra-op threads")
    ap.add_argument("--out", required=True, help="OUT.json to write")
    ap.add_argument("--warmup", type=int, default=DEFAULT_WARMUP, help="untimed calls before the latency samples")
    ap.add_argument("--latency-repeats", type=int, default=DEFAULT_REPEATS, help="batch-1 latency samples")
    ap.add_argument("--model", help="model file")
    ap.add_argument("--variant", help="backend / variant")
    ap.add_argument("--score-thresh", type=float, default=DEFAULT_SCORE_THRESH, help="lowest score kept")
    return ap


def read_list(path: str | Path) -> list[str]:
    """The image paths of LIST.txt (blank lines skipped); exits with a message naming the file."""
    try:
        lines = [ln.strip() for ln in Path(path).read_text().splitlines()]
    except OSError as e:
        sys.exit(f"--images {path}: {e}")
    paths = [ln for ln in lines if ln]
    if not paths:
        sys.exit(f"--images {path}: no image paths")
    return paths


def decode(path: str) -> np.ndarray:
    """HxWx3 uint8 RGB as facedet's data sets read it (EXIF orientation ignored: the labels' pixels)."""
    img = cv2.imdecode(np.fromfile(path, np.uint8), cv2.IMREAD_COLOR_RGB | cv2.IMREAD_IGNORE_ORIENTATION)
    if img is None:
        raise SystemExit(f"cannot decode image {path}")
    return img


def rows(pred: dict[str, np.ndarray]) -> tuple[list[list[float]], list[list[list[float]]] | None]:
    """``[[x1, y1, x2, y2, score], ...]`` and, with landmarks, ``[[[x, y] * 5], ...]`` (NaN -> null)."""
    boxes = np.asarray(pred["boxes"], np.float64).reshape(-1, 4)
    scores = np.asarray(pred["scores"], np.float64).reshape(-1)
    dets = [[*map(float, b), float(s)] for b, s in zip(boxes, scores, strict=True)]
    if pred.get("landmarks") is None:
        return dets, None
    pts = np.asarray(pred["landmarks"], np.float64).reshape(-1, 5, 2)
    return dets, [[[None if math.isnan(v) else float(v) for v in p] for p in face] for face in pts]


def run(detect: Callable[[np.ndarray], dict[str, np.ndarray]], args: argparse.Namespace, *, name: str,
        versions: dict[str, str], input_note: str, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Time ``detect`` as the protocol says and write OUT.json: latency on the first image (decoded
    once) after ``--warmup`` calls; then every image of the list, decode included, for the detections
    and ``seconds_total``."""
    paths = read_list(args.images)
    first = decode(paths[0])
    for _ in range(args.warmup):
        detect(first)
    latency = []
    for _ in range(args.latency_repeats):
        t = time.perf_counter()
        detect(first)
        latency.append((time.perf_counter() - t) * 1000.0)
    detections, points = {}, {}
    start = time.perf_counter()
    for p in paths:
        dets, pts = rows(detect(decode(p)))
        detections[p] = dets
        if pts is not None:
            points[p] = pts
    total = time.perf_counter() - start
    out = {"name": name, "versions": versions, "input": input_note, "threads": args.threads,
           "score_thresh": args.score_thresh, "detections": detections, "latency_ms": latency,
           "seconds_total": total, "images": len(paths)} | dict(extra or {})
    if points:
        out["points"] = points
    Path(args.out).write_text(json.dumps(out))
    med = statistics.median(latency) if latency else float("nan")
    print(f"{name}: {len(paths)} images in {total:.2f} s, batch-1 latency median {med:.2f} ms -> {args.out}")
    return out


def version_of(dist: str) -> str:
    """The installed version of a distribution, or "not installed" / "source tree"."""
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"
