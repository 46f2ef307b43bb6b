"""A deterministic synthetic face data set: cartoon faces on cluttered backgrounds.

Not trivial but learnable: faces of 8-200 px (log-uniform) with skin tones, eyes, brows, nose and
mouth, sometimes hair, glasses or a mask, small in-plane rotations and yaw, per-face blur and
lighting; backgrounds with gradients, texture, clutter and face-sized distractors (skin-coloured
ellipses and blobs without facial features) so colour and shape alone do not solve the task.

Every image is rendered from its own seed ``(seed, split, index)``, so the set is reproducible and
independent of rendering order. ``ensure_synthetic`` generates a set once (atomically) and reuses
it while its manifest matches.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import cv2
import numpy as np

log = logging.getLogger(__name__)

GENERATOR = "facedet.data.synthetic"
VERSION = 2  # bump whenever rendering changes, so cached sets are regenerated
SPLITS = {"train": 0, "val": 1}
IMG_RANGE = (256, 416)  # image side lengths, inclusive
FACE_RANGE = (8.0, 200.0)  # face box widths before clipping to the image
_SHIFT = 4  # cv2 sub-pixel bits: small faces need sub-pixel feature placement
_ONE = 1 << _SHIFT

# RGB palettes
SKIN = np.float32(
    [[255, 224, 196], [241, 194, 125], [224, 172, 105], [198, 134, 66], [141, 85, 36], [92, 58, 32]]
)
HAIR = np.float32(
    [[20, 15, 10], [60, 40, 25], [110, 75, 40], [200, 170, 110], [150, 150, 150], [140, 60, 25]]
)
MASKS = np.float32([[170, 210, 235], [240, 240, 240], [30, 30, 35], [90, 140, 200]])
EYES = np.float32([[40, 25, 15], [60, 90, 140], [60, 100, 60]])


def _pt(x: float, y: float) -> tuple[int, int]:
    return int(round(x * _ONE)), int(round(y * _ONE))


def _col(c: np.ndarray) -> tuple[float, ...]:
    return tuple(float(v) for v in np.clip(c, 0, 255))


def _ellipse(img, c, axes, angle, color, thickness=-1, start=0.0, end=360.0) -> None:
    ax = (max(int(round(axes[0] * _ONE)), 1), max(int(round(axes[1] * _ONE)), 1))
    cv2.ellipse(img, _pt(*c), ax, float(angle), start, end, _col(color), thickness, cv2.LINE_AA, _SHIFT)


def _poly(img, pts: np.ndarray, color, closed: bool | None = None) -> None:
    """Filled polygon, or an open/closed polyline when ``closed`` is given."""
    p = [np.round(np.asarray(pts) * _ONE).astype(np.int32)]
    if closed is None:
        cv2.fillPoly(img, p, _col(color), cv2.LINE_AA, _SHIFT)
    else:
        cv2.polylines(img, p, closed, _col(color), 1, cv2.LINE_AA, _SHIFT)


def _line(img, p0, p1, color, thickness: int = 1) -> None:
    cv2.line(img, _pt(*p0), _pt(*p1), _col(color), int(thickness), cv2.LINE_AA, _SHIFT)


def _half_extent(a: float, b: float, angle: float) -> tuple[float, float]:
    """Half width and height of the axis-aligned box around an ellipse rotated by ``angle`` degrees."""
    c, s = np.cos(np.deg2rad(angle)), np.sin(np.deg2rad(angle))
    return float(np.hypot(a * c, b * s)), float(np.hypot(a * s, b * c))


def _taps(n_in: int, n_out: int, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """Source indices (n_out x k) and weights (n_out x k) of a 1-D resize with pixel centres aligned
    (as cv2.resize), borders replicated; cubic is Keys' kernel with a = -0.75 (OpenCV's)."""
    src = (np.arange(n_out, dtype=np.float64) + 0.5) * (n_in / n_out) - 0.5
    if kind == "nearest":
        index = np.minimum((np.arange(n_out) * n_in) // n_out, n_in - 1)  # cv2's INTER_NEAREST: floor(i * in / out)
        return index[:, None], np.ones((n_out, 1))
    base = np.floor(src)
    t = src - base
    if kind == "linear":
        offsets, weights = np.array([0, 1]), np.stack([1 - t, t], 1)
    else:
        a, offsets = -0.75, np.array([-1, 0, 1, 2])
        d = np.abs(t[:, None] - offsets[None])
        weights = np.where(d <= 1, ((a + 2) * d - (a + 3)) * d * d + 1, ((a * d - 5 * a) * d + 8 * a) * d - 4 * a)
    return np.clip(base[:, None].astype(int) + offsets[None], 0, n_in - 1), weights


def _upsample(small: np.ndarray, h: int, w: int, kind: str) -> np.ndarray:
    """Resize an HxWxC float32 map to h x w in numpy. Not cv2.resize: its float kernels changed
    between OpenCV releases (and differ by CPU instruction set); elementwise numpy arithmetic is
    the same everywhere, so the rendered set does not depend on the OpenCV pip resolved."""
    rows, row_w = _taps(small.shape[0], h, kind)
    cols, col_w = _taps(small.shape[1], w, kind)
    out = np.zeros((h, small.shape[1], small.shape[2]), np.float64)
    for k in range(rows.shape[1]):
        out += small[rows[:, k]] * row_w[:, k, None, None]
    res = np.zeros((h, w, small.shape[2]), np.float64)
    for k in range(cols.shape[1]):
        res += out[:, cols[:, k]] * col_w[None, :, k, None]
    return res.astype(np.float32)


def _background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Gradient + low-frequency colour + optional texture, then random clutter (float work, uint8 out)."""
    d = rng.normal(size=2)
    ramp = np.arange(w, dtype=np.float32)[None] * d[0] + np.arange(h, dtype=np.float32)[:, None] * d[1]
    ramp = (ramp - ramp.min()) / max(float(np.ptp(ramp)), 1e-6)
    c0, c1 = rng.uniform(0, 255, (2, 3)).astype(np.float32)
    img = c0 + ramp[..., None] * (c1 - c0)
    if rng.random() < 0.7:
        small = rng.uniform(-70, 70, (rng.integers(2, 8), rng.integers(2, 8), 3)).astype(np.float32)
        img += _upsample(small, h, w, "cubic")
    if rng.random() < 0.5:
        k = int(rng.integers(1, 6))
        tex = rng.standard_normal((h // k + 1, w // k + 1, 1), dtype=np.float32) * rng.uniform(5, 30)
        tex = _upsample(tex, h, w, "nearest" if rng.random() < 0.5 else "linear")
        img += tex  # H x W x 1: the same grain in every channel
    img = np.clip(img, 0, 255).astype(np.uint8)
    for _ in range(int(rng.integers(4, 24))):
        col, kind = rng.uniform(0, 255, 3), rng.integers(5)
        x, y = rng.uniform(0, w), rng.uniform(0, h)
        s = float(np.exp(rng.uniform(np.log(8), np.log(0.6 * min(h, w)))))
        if kind == 0:  # rotated rectangle
            half = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]]) * [s / 2, s * rng.uniform(0.2, 1.5) / 2]
            t = np.deg2rad(rng.uniform(0, 180))
            _poly(img, half @ [[np.cos(t), np.sin(t)], [-np.sin(t), np.cos(t)]] + [x, y], col)
        elif kind == 1:
            _line(img, (x, y), np.array([x, y]) + rng.normal(0, s, 2), col, rng.integers(1, 5))
        elif kind == 2:  # ring
            _ellipse(img, (x, y), (s / 2, s / 2), 0, col, int(rng.integers(1, 4)))
        elif kind == 3:  # polyline scribble
            _poly(img, np.cumsum(rng.normal(0, s / 3, (int(rng.integers(3, 8)), 2)), 0) + [x, y], col, False)
        else:
            _glyphs(img, rng, x, y, col)
    return img


def _glyphs(img: np.ndarray, rng: np.random.Generator, x: float, y: float, color) -> None:
    """A word of 2-6 letter-like glyphs, each 2-4 strokes between points of a 3x4 grid in its cell.

    Not cv2.putText: OpenCV 5 draws the Hershey fonts differently from OpenCV 4 (up to a quarter of
    an image's pixels changed), which changed the data set, and so the default job's AP, with the
    OpenCV release pip happened to resolve. Lines, ellipses and polygons render identically in both.
    """
    height = rng.uniform(7, 33)  # the cap heights putText gave at scales 0.3-1.5
    width, thick = 0.6 * height, int(rng.integers(1, 3))
    for i in range(int(rng.integers(2, 7))):
        x0 = x + i * 1.25 * width
        grid = rng.integers(0, [3, 4], (int(rng.integers(2, 5)), 2, 2)) / [2, 3]  # (stroke, end, xy)
        for p0, p1 in grid:
            _line(img, (x0 + p0[0] * width, y - p0[1] * height), (x0 + p1[0] * width, y - p1[1] * height),
                  color, thick)


def _skin(rng: np.random.Generator) -> np.ndarray:
    i = rng.uniform(0, len(SKIN) - 1)  # interpolate between palette tones for a continuum
    lo = int(i)
    return SKIN[lo] + (i - lo) * (SKIN[lo + 1] - SKIN[lo]) + rng.normal(0, 8, 3)


def _distractor(img: np.ndarray, rng: np.random.Generator) -> None:
    """Face-sized things that are not faces: plain skin ellipses (with hair: a back of a head),
    coloured ellipses and irregular blobs, some skin-coloured."""
    h, w = img.shape[:2]
    s = float(np.exp(rng.uniform(np.log(10), np.log(150))))
    x, y = rng.uniform(0, w), rng.uniform(0, h)
    col = _skin(rng) * rng.uniform(0.6, 1.2) if rng.random() < 0.5 else rng.uniform(0, 255, 3)
    kind = rng.integers(3)
    if kind == 0:
        angle = rng.uniform(-40, 40)
        if rng.random() < 0.3:
            _ellipse(img, (x, y - 0.15 * s), (0.55 * s, 0.6 * s), angle, HAIR[rng.integers(len(HAIR))])
        _ellipse(img, (x, y), (s / 2, s / 2 * rng.uniform(0.7, 1.5)), angle, col)
    elif kind == 1:
        n = int(rng.integers(7, 14))
        t = np.sort(rng.uniform(0, 2 * np.pi, n))
        r = s / 2 * rng.uniform(0.55, 1.2, n)
        _poly(img, np.stack([x + r * np.cos(t), y + r * np.sin(t)], 1), col)
    else:  # ellipse with a stripe or a single spot: features, but not a face's arrangement
        _ellipse(img, (x, y), (s / 2, s / 2 * rng.uniform(0.6, 1.4)), rng.uniform(0, 180), col)
        dark = col * rng.uniform(0.2, 0.6)
        if rng.random() < 0.5:
            _line(img, (x - s / 3, y), (x + s / 3, y), dark, max(1, int(s / 12)))
        else:
            _ellipse(img, (x + rng.uniform(-0.2, 0.2) * s, y), (s / 8, s / 8), 0, dark)


def _draw_face(
    img: np.ndarray, rng: np.random.Generator, cx: float, cy: float, a: float, b: float, angle: float
) -> None:
    """Draw a face ellipse with semi-axes ``a`` (x) and ``b`` (y) rotated by ``angle`` degrees."""
    c, s = np.cos(np.deg2rad(angle)), np.sin(np.deg2rad(angle))
    yaw = rng.uniform(-0.22, 0.22)

    def P(dx: float, dy: float) -> tuple[float, float]:  # face frame (units of a, b) -> image
        x, y = dx * a, dy * b
        return cx + x * c - y * s, cy + x * s + y * c

    light = rng.uniform(0.55, 1.25)
    skin = _skin(rng) * light
    hair = HAIR[rng.integers(len(HAIR))] * light
    line = max(1, int(round(0.05 * a)))
    if rng.random() < 0.6:  # hair behind the head; long hair shows at the sides
        _ellipse(img, P(0, -0.2), (1.12 * a, 0.98 * b), angle, hair)
        if rng.random() < 0.35:
            _ellipse(img, P(0, 0.15), (1.2 * a, 1.05 * b), angle, hair)
    if rng.random() < 0.6:
        for side in (-1, 1):
            _ellipse(img, P(side * 0.98, 0.0), (0.17 * a, 0.28 * b), angle, skin * 0.9)
    _ellipse(img, (cx, cy), (a, b), angle, skin)
    _ellipse(img, P(-0.25 * np.sign(yaw), -0.25), (0.45 * a, 0.35 * b), angle, skin * 1.06)  # highlight
    eye_col = EYES[rng.integers(len(EYES))]
    closed = rng.random() < 0.08
    eyes = []
    for side in (-1, 1):
        ex, k = side * 0.36 + yaw, 1.0 - side * yaw * 1.5  # the far eye looks smaller under yaw
        eyes.append(P(ex, -0.08))
        if closed:
            _ellipse(img, P(ex, -0.08), (0.16 * a * k, 0.04 * b), angle, skin * 0.45, line, 0, 180)
        else:
            _ellipse(img, P(ex, -0.08), (0.17 * a * k, 0.075 * b), angle, np.array([235, 235, 228]) * light)
            _ellipse(img, P(ex + 0.3 * yaw, -0.08), (0.075 * a * k, 0.075 * a * k), 0, eye_col * light)
            _ellipse(img, P(ex + 0.3 * yaw, -0.08), (0.035 * a * k, 0.035 * a * k), 0, (10, 10, 10))
        if rng.random() < 0.85:
            _ellipse(img, P(ex, -0.26), (0.2 * a * k, 0.07 * b), angle, hair * 0.7, line, 200, 340)
    _line(img, P(yaw * 0.6, -0.02), P(yaw + 0.06, 0.22), skin * 0.72, line)  # nose
    _ellipse(img, P(yaw, 0.25), (0.12 * a, 0.04 * b), angle, skin * 0.7)
    lips = np.array([170, 70, 70], np.float32) * light
    m, mouth = P(yaw * 0.8, 0.52), rng.integers(3)
    if mouth == 0:  # smile
        _ellipse(img, P(yaw * 0.8, 0.42), (0.3 * a, 0.12 * b), angle, lips, line + 1, 10, 170)
    elif mouth == 1:  # open
        _ellipse(img, m, (0.24 * a, 0.09 * b), angle, lips * 0.45)
    else:
        _ellipse(img, m, (0.28 * a, 0.05 * b), angle, lips)
    r = rng.random()
    if r < 0.15:  # glasses, a third of them sunglasses
        dark = np.array([25, 25, 25], np.float32)
        for e in eyes:
            _ellipse(img, e, (0.24 * a, 0.2 * b), angle, dark, -1 if rng.random() < 0.33 else line)
        _line(img, P(-0.12, -0.08), P(0.12, -0.08), dark, line)
    elif r < 0.35:  # a surgical mask over nose and mouth, with its strings
        col = MASKS[rng.integers(len(MASKS))] * light
        fr = np.array([(-0.97, 0.08), (0.97, 0.08), (0.85, 0.6), (0.35, 0.93), (-0.35, 0.93), (-0.85, 0.6)])
        _poly(img, np.array([P(*p) for p in fr]), col)
        for dy in (0.35, 0.6):  # pleats
            _line(img, P(-0.8, dy), P(0.8, dy), col * 0.8)
        for side in (-1, 1):  # strings
            _line(img, P(side * 0.97, 0.12), P(side * 1.02, -0.15), col * 0.9)


def _place_faces(rng: np.random.Generator, h: int, w: int) -> list[tuple[float, float, float, float, float]]:
    """(cx, cy, a, b, angle) per face, biggest first, overlapping each other by at most a little."""
    n = int(rng.integers(1, 9))
    widths = np.sort(np.exp(rng.uniform(np.log(FACE_RANGE[0]), np.log(FACE_RANGE[1]), n)))[::-1]
    faces, boxes = [], np.zeros((0, 4))
    for fw in widths:
        a = fw / 2
        b = a * rng.uniform(1.15, 1.35)
        angle = rng.uniform(-20, 20)
        hw, hh = _half_extent(a, b, angle)
        k = min(1.0, 0.45 * w / hw, 0.45 * h / hh)  # clip to fit the image
        a, b, hw, hh = a * k, b * k, hw * k, hh * k
        for _ in range(30):
            cx, cy = rng.uniform(hw, w - hw), rng.uniform(hh, h - hh)
            box = np.array([cx - hw, cy - hh, cx + hw, cy + hh])
            iw = np.clip(np.minimum(boxes[:, 2], box[2]) - np.maximum(boxes[:, 0], box[0]), 0, None)
            ih = np.clip(np.minimum(boxes[:, 3], box[3]) - np.maximum(boxes[:, 1], box[1]), 0, None)
            smaller = np.minimum((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]), 4 * hw * hh)
            if not np.any(iw * ih > 0.1 * smaller):
                faces.append((cx, cy, a, b, angle))
                boxes = np.vstack([boxes, box])
                break
    return faces


def render_synthetic_image(seed: int, split: str, index: int) -> tuple[np.ndarray, np.ndarray]:
    """Render image ``index`` of ``split``: (HxWx3 uint8 RGB, Nx4 float32 xyxy face boxes, rounded
    to 0.01 px as written to disk). Depends only on its arguments."""
    rng = np.random.default_rng([seed, SPLITS[split], index])
    w, h = (int(v) for v in rng.integers(IMG_RANGE[0], IMG_RANGE[1] + 1, 2))
    img = _background(rng, h, w)
    for _ in range(int(rng.integers(2, 11))):
        _distractor(img, rng)
    boxes = []
    for cx, cy, a, b, angle in _place_faces(rng, h, w):
        _draw_face(img, rng, cx, cy, a, b, angle)
        hw, hh = _half_extent(a, b, angle)
        boxes.append([cx - hw, cy - hh, cx + hw, cy + hh])
        if rng.random() < 0.2:  # defocus / motion-free blur on this face only
            x0, y0 = int(max(cx - 1.6 * hw, 0)), int(max(cy - 1.6 * hh, 0))
            x1, y1 = int(min(cx + 1.6 * hw + 1, w)), int(min(cy + 1.6 * hh + 1, h))
            sigma = rng.uniform(0.5, 0.5 + 0.06 * 2 * hw)
            img[y0:y1, x0:x1] = cv2.GaussianBlur(img[y0:y1, x0:x1], (0, 0), sigma)
    # global lighting: colour cast, brightness, contrast, an illumination gradient, sensor noise
    gain = (rng.uniform(0.8, 1.2, 3) * rng.uniform(0.6, 1.3)).astype(np.float32)
    f = img.astype(np.float32) * gain
    # the mean from exact integer channel sums: a float32 f.mean() changed with numpy's summation
    # order (2.2 vs 2.4), and with it every pixel of the image
    sums = img.reshape(-1, 3).sum(0, dtype=np.int64)
    mean = sum(float(g) * int(n) for g, n in zip(gain, sums, strict=True)) / img.size
    f = (f - mean) * rng.uniform(0.6, 1.3) + mean
    if rng.random() < 0.5:
        along_x = rng.random() < 0.5
        g = np.linspace(*rng.uniform(0.5, 1.3, 2), w if along_x else h, dtype=np.float32)
        f *= g[None, :, None] if along_x else g[:, None, None]
    if rng.random() < 0.4:
        f += rng.standard_normal((h, w, 1), dtype=np.float32) * rng.uniform(2, 10)
    img = np.clip(f, 0, 255).astype(np.uint8)
    if rng.random() < 0.1:
        img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.6, 1.2))
    out = np.round(np.asarray(boxes, np.float32).reshape(-1, 4), 2)
    return img, np.clip(out, 0, [w, h, w, h]).astype(np.float32)


def _params(num_train: int = 1200, num_val: int = 200, seed: int = 0) -> dict[str, int]:
    return {"num_train": int(num_train), "num_val": int(num_val), "seed": int(seed)}


def _key(manifest: dict[str, Any] | None) -> tuple[Any, ...] | None:
    """The part of a manifest that decides whether a set on disk is the one wanted."""
    return None if manifest is None else tuple(manifest.get(k) for k in ("generator", "version", "params"))


def read_manifest(root: str | Path) -> dict[str, Any] | None:
    """The manifest of a generated set, or None when missing or unreadable (an incomplete set)."""
    try:
        return json.loads((Path(root) / "manifest.json").read_text())
    except (OSError, ValueError):
        return None


def encode_jpeg(img: np.ndarray) -> bytes:
    """The JPEG bytes (quality 95) of an RGB image, as written into the set."""
    ok, buf = cv2.imencode(".jpg", img[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return buf.tobytes()


def _write_split(out: Path, seed: int, split: str, n: int) -> dict[str, int]:
    """Images, WIDER txt and COCO json of one split; returns its image and face counts."""
    (out / "images").mkdir(parents=True, exist_ok=True)
    lines, images, anns = [], [], []
    for i in range(n):
        img, boxes = render_synthetic_image(seed, split, i)
        name = f"{i:05d}.jpg"
        (out / "images" / name).write_bytes(encode_jpeg(img))
        b64 = boxes.astype(np.float64)  # float32 would print as 12.3400001 in the json
        xywh = np.concatenate([b64[:, :2], b64[:, 2:] - b64[:, :2]], 1).round(2).tolist()
        lines += [name, str(len(xywh))] + [
            f"{x:.2f} {y:.2f} {bw:.2f} {bh:.2f} 0 0 0 0 0 0" for x, y, bw, bh in xywh
        ]
        images.append(dict(id=i + 1, file_name=name, height=img.shape[0], width=img.shape[1]))
        for b in xywh:
            a = dict(id=len(anns) + 1, image_id=i + 1, category_id=1, bbox=b, area=round(b[2] * b[3], 4))
            anns.append(a | {"iscrowd": 0})
    (out / "labels.txt").write_text("\n".join(lines) + "\n")
    coco = {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "face"}]}
    (out / "coco.json").write_text(json.dumps(coco))
    return {"images": n, "faces": len(anns)}


def generate_synthetic(root: str | Path, *, num_train: int = 1200, num_val: int = 200, seed: int = 0) -> None:
    """Write ``root/{train,val}/{images/*.jpg, labels.txt, coco.json}`` and ``root/manifest.json``.

    labels.txt is WIDER FACE txt (attributes all 0); coco.json has one category (1, "face"). The
    manifest is written last, so its presence means the set is complete.
    """
    root, params, start = Path(root), _params(num_train, num_val, seed), time.perf_counter()
    counts = {
        split: _write_split(root / split, params["seed"], split, params[f"num_{split}"]) for split in SPLITS
    }
    manifest = dict(generator=GENERATOR, version=VERSION, params=params, counts=counts)
    manifest["seconds"] = round(time.perf_counter() - start, 2)
    (root / "manifest.json").write_text(json.dumps(manifest, indent=2))


def ensure_synthetic(root: str | Path, **params: Any) -> Path:
    """Generate the set at ``root`` unless a complete one with the same parameters and generator
    version is already there; returns the absolute root.

    Generation goes to a temporary sibling directory that is renamed into place, so a crash or a
    concurrent run (several DDP ranks) never leaves a half-written set. An existing directory
    that is not a generated set is never replaced.
    """
    root = Path(root).absolute()
    want = {"generator": GENERATOR, "version": VERSION, "params": _params(**params)}
    if _key(read_manifest(root)) == _key(want):
        return root
    if root.exists() and any(root.iterdir()) and (read_manifest(root) or {}).get("generator") != GENERATOR:
        raise ValueError(
            f"{root} exists and is not a synthetic data set (no facedet manifest); refusing to replace it."
        )
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.tmp-", dir=root.parent))
    try:
        log.info("generating synthetic faces %s into %s", want["params"], root)
        generate_synthetic(tmp, **want["params"])
        old = root.with_name(f".{root.name}.old-{uuid.uuid4().hex[:8]}")
        if _key(read_manifest(root)) != _key(want):  # another process may have finished meanwhile
            with contextlib.suppress(FileNotFoundError):
                os.rename(root, old)
            try:
                os.rename(tmp, root)
            except OSError:  # lost a race: root was recreated by a concurrent run
                if _key(read_manifest(root)) != _key(want):
                    raise
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return root
