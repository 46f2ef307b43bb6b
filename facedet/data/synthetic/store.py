"""The synthetic set on disk: images (JPEG), WIDER txt, RetinaFace txt (with the five points) and COCO
json labels per split, and a manifest written last; ``ensure_synthetic`` generates a set once
(atomically) and reuses it while its manifest matches."""

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

from facedet.data.records import LANDMARK_NAMES
from facedet.data.synthetic.render import SPLITS, render_synthetic_sample

log = logging.getLogger(__name__)

GENERATOR = "facedet.data.synthetic"  # recorded in every manifest: keep it, or cached sets regenerate
VERSION = 3  # bump whenever rendering or the label files change, so cached sets are regenerated (3: landmarks)


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


# the RetinaFace label.txt layout, beside the WIDER txt (which cannot hold points); the reader reads it
RETINAFACE_LABELS = "retinaface_label.txt"


def _retinaface_face(xywh: list[float], lm: np.ndarray) -> str:
    """One face line of RetinaFace label.txt: ``x y w h`` + ``lx ly 0.0`` per point (``-1 -1 -1``
    where absent) + the quality column the official files carry (1.0)."""
    pts = " ".join("-1 -1 -1" if np.isnan(p).any() else f"{p[0]:.2f} {p[1]:.2f} 0.0" for p in lm)
    return " ".join(f"{v:.2f}" for v in xywh) + f" {pts} 1.0"


def _keypoints(lm: np.ndarray) -> dict[str, Any]:
    """COCO ``keypoints`` (x, y, v = 2; 0, 0, 0 where absent) and ``num_keypoints`` of one face."""
    kp = [v for p in lm for v in ([0, 0, 0] if np.isnan(p).any() else [*np.round(p, 2).tolist(), 2])]
    return {"keypoints": kp, "num_keypoints": int(np.isfinite(lm).all(1).sum())}


def _write_split(out: Path, seed: int, split: str, n: int) -> dict[str, int]:
    """Images, WIDER txt, RetinaFace txt and COCO json of one split; returns its image and face counts."""
    (out / "images").mkdir(parents=True, exist_ok=True)
    lines, rf_lines, images, anns = [], [], [], []
    for i in range(n):
        img, boxes, landmarks = render_synthetic_sample(seed, split, i)
        name = f"{i:05d}.jpg"
        (out / "images" / name).write_bytes(encode_jpeg(img))
        b64 = boxes.astype(np.float64)  # float32 would print as 12.3400001 in the json
        xywh = np.concatenate([b64[:, :2], b64[:, 2:] - b64[:, :2]], 1).round(2).tolist()
        lines += [name, str(len(xywh))] + [
            f"{x:.2f} {y:.2f} {bw:.2f} {bh:.2f} 0 0 0 0 0 0" for x, y, bw, bh in xywh
        ]
        lm64 = landmarks.astype(np.float64)
        rf_lines += [f"# {name}"] + [_retinaface_face(b, lm) for b, lm in zip(xywh, lm64, strict=True)]
        images.append(dict(id=i + 1, file_name=name, height=img.shape[0], width=img.shape[1]))
        for b, lm in zip(xywh, lm64, strict=True):
            a = dict(id=len(anns) + 1, image_id=i + 1, category_id=1, bbox=b, area=round(b[2] * b[3], 4))
            anns.append(a | {"iscrowd": 0} | _keypoints(lm))
    (out / "labels.txt").write_text("\n".join(lines) + "\n")
    (out / RETINAFACE_LABELS).write_text("\n".join(rf_lines) + "\n")
    category = {"id": 1, "name": "face", "keypoints": LANDMARK_NAMES, "skeleton": []}
    coco = {"images": images, "annotations": anns, "categories": [category]}
    (out / "coco.json").write_text(json.dumps(coco))
    return {"images": n, "faces": len(anns)}


def generate_synthetic(root: str | Path, *, num_train: int = 1200, num_val: int = 200, seed: int = 0) -> None:
    """Write ``root/{train,val}/{images/*.jpg, labels.txt, retinaface_label.txt, coco.json}`` and
    ``root/manifest.json``.

    labels.txt is WIDER FACE txt (boxes, attributes all 0); retinaface_label.txt the same boxes with
    every face's five points (RetinaFace label.txt, what the ``synthetic`` reader reads); coco.json
    has one category (1, "face") and the points as 5 keypoints. The manifest is written last, so its
    presence means the set is complete.
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
