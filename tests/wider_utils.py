"""Test helpers: WIDER FACE ground truth .mat files and a WIDER-layout image folder, built small.

The .mat files have the structure of the official ``eval_tools/ground_truth`` ones (cell arrays as
numpy object arrays, written with ``scipy.io.savemat``), so the reader is exercised as on the real files.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import scipy.io

from facedet.data.synthetic import render_synthetic_image

SETTINGS = ("easy", "medium", "hard")


@dataclass
class GTImage:
    event: str
    name: str
    boxes: np.ndarray  # (N, 4) x y w h
    keep: dict[str, Sequence[int]] = field(default_factory=dict)  # setting -> 1-based indices that count


def _cell(items: list) -> np.ndarray:
    out = np.empty((len(items), 1), dtype=object)
    for i, v in enumerate(items):
        out[i, 0] = v
    return out


def write_wider_gt(gt_dir: Path, images: Sequence[GTImage]) -> Path:
    """wider_face_val.mat and wider_{easy,medium,hard}_val.mat for ``images`` (grouped by event)."""
    gt_dir.mkdir(parents=True, exist_ok=True)
    events = list(dict.fromkeys(im.event for im in images))
    per_event = {e: [im for im in images if im.event == e] for e in events}
    files = _cell([_cell([im.name for im in per_event[e]]) for e in events])
    boxes = _cell([_cell([np.asarray(im.boxes, np.float64).reshape(-1, 4) for im in per_event[e]]) for e in events])
    scipy.io.savemat(gt_dir / "wider_face_val.mat",
                     {"event_list": _cell(events), "file_list": files, "face_bbx_list": boxes})
    for s in SETTINGS:
        lists = _cell([_cell([np.asarray(im.keep.get(s, []), np.float64).reshape(-1, 1) for im in per_event[e]])
                       for e in events])
        scipy.io.savemat(gt_dir / f"wider_{s}_val.mat",
                         {"event_list": _cell(events), "file_list": files, "face_bbx_list": boxes, "gt_list": lists})
    return gt_dir


def make_wider_layout(root: Path, n_images: int = 6, events: Sequence[str] = ("0--Parade", "1--Handshaking")
                      ) -> tuple[Path, Path, list[GTImage]]:
    """``root/WIDER_val/images/<event>/<name>.jpg`` from synthetic images, the matching
    ``wider_face_split/wider_face_val_bbx_gt.txt`` and a ground truth folder ``root/gt`` in which
    every face counts in hard, faces >= 16 px in medium and >= 32 px in easy.
    Returns (data root, gt dir, the ground truth)."""
    lines, gts = [], []
    for i in range(n_images):
        event = events[i % len(events)]
        name = f"{event.split('--')[0]}_{event.split('--')[1]}_synthetic_{i}"
        img, xyxy = render_synthetic_image(7, "val", i)
        path = root / "WIDER_val" / "images" / event / f"{name}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(path), img[..., ::-1])
        xywh = np.concatenate([xyxy[:, :2], xyxy[:, 2:] - xyxy[:, :2]], 1).round(0)
        size = np.sqrt(xywh[:, 2] * xywh[:, 3])
        keep = {"hard": list(range(1, len(xywh) + 1)),
                "medium": [k + 1 for k in np.flatnonzero(size >= 16)],
                "easy": [k + 1 for k in np.flatnonzero(size >= 32)]}
        gts.append(GTImage(event, name, xywh, keep))
        lines += [f"{event}/{name}.jpg", str(len(xywh))] + [
            f"{x:.0f} {y:.0f} {w:.0f} {h:.0f} 0 0 0 0 0 0" for x, y, w, h in xywh
        ]
    split = root / "wider_face_split"
    split.mkdir(parents=True, exist_ok=True)
    (split / "wider_face_val_bbx_gt.txt").write_text("\n".join(lines) + "\n")
    return root, write_wider_gt(root / "gt", gts), gts
