"""WIDER FACE ground truth, read from the official ``eval_tools/ground_truth`` files.

``wider_face_val.mat`` holds ``event_list``, ``file_list`` and ``face_bbx_list`` (x y w h);
``wider_{easy,medium,hard}_val.mat`` hold ``gt_list``: the 1-based indices of the faces that count in
that setting (the others are ignored). The protocol that scores against it is in
``facedet/evaluation/widerface.py``.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import scipy.io

from facedet.structures import IMAGE_SUFFIXES

log = logging.getLogger(__name__)

SETTINGS = ("easy", "medium", "hard")
GT_FILE = "wider_face_val.mat"


@dataclass(frozen=True)
class WiderImage:
    """One image's official ground truth."""

    event: str  # e.g. "0--Parade"
    name: str  # file name without extension, e.g. "0_Parade_marchingband_1_465"
    boxes: np.ndarray  # (N, 4) float64 x y w h, as in the .mat (not clipped, zero sizes kept)
    counted: dict[str, np.ndarray]  # setting -> (N,) bool: the face counts (else it is ignored)

    @property
    def key(self) -> str:
        return f"{self.event}/{self.name}"


def _cells(cell: Any) -> list[Any]:
    """The entries of a MATLAB cell array as scipy.io loads it (an object array of any shape)."""
    return list(np.asarray(cell, dtype=object).ravel())


def _text(cell_entry: Any) -> str:
    return str(np.asarray(cell_entry).ravel()[0])


def _load_mat(path: Path, keys: Iterable[str]) -> dict[str, Any]:
    if not path.is_file():
        raise FileNotFoundError(
            f"WIDER FACE ground truth file not found: {path} (the official eval_tools/ground_truth folder "
            f"holds {GT_FILE} and wider_{{easy,medium,hard}}_val.mat)"
        )
    mat = scipy.io.loadmat(str(path))
    for key in keys:
        if key not in mat:
            raise ValueError(f"{path}: no '{key}' in this .mat; is it an official WIDER FACE ground truth file?")
    return mat


class WiderGroundTruth:
    """The official ground truth of a folder, indexed by ``event/name`` and by name alone."""

    def __init__(self, images: Sequence[WiderImage], source: str = "") -> None:
        self.images = {img.key: img for img in images}
        self.source = source
        by_name: dict[str, list[str]] = {}
        for img in images:
            by_name.setdefault(img.name, []).append(img.key)
        self._by_name = by_name

    def __len__(self) -> int:
        return len(self.images)

    @classmethod
    def from_dir(cls, gt_dir: str | Path) -> WiderGroundTruth:
        """Read ``wider_face_val.mat`` and the three setting files from ``gt_dir``."""
        return _load_ground_truth(str(Path(gt_dir).expanduser().absolute()))

    def key_of(self, image_id: str) -> str:
        """The ``event/name`` key of a data-set image id (``0--Parade/0_Parade_x_1_465.jpg``, with or
        without folder or extension). Raises KeyError naming the image when it is not in the set."""
        p = PurePosixPath(str(image_id).replace("\\", "/"))
        name = p.stem if p.suffix.lower() in IMAGE_SUFFIXES else p.name
        key = f"{p.parent.name}/{name}"
        if key in self.images:
            return key
        keys = self._by_name.get(name, [])
        if len(keys) == 1:
            return keys[0]
        where = f" in {self.source}" if self.source else ""
        if len(keys) > 1:
            raise KeyError(f"image '{image_id}' is ambiguous{where}: give its event folder ({', '.join(keys)})")
        raise KeyError(f"image '{image_id}' is not in the WIDER FACE ground truth{where}")


@functools.lru_cache(maxsize=4)
def _load_ground_truth(gt_dir: str) -> WiderGroundTruth:
    root = Path(gt_dir)
    main = _load_mat(root / GT_FILE, ("event_list", "file_list", "face_bbx_list"))
    lists = {s: _cells(_load_mat(root / f"wider_{s}_val.mat", ("gt_list",))["gt_list"]) for s in SETTINGS}
    events, files, boxes = (_cells(main[k]) for k in ("event_list", "file_list", "face_bbx_list"))
    if not len(events) == len(files) == len(boxes) or any(len(v) != len(events) for v in lists.values()):
        raise ValueError(f"{root}: the .mat files disagree on the number of events")
    images = []
    for e, event_cell in enumerate(events):
        event = _text(event_cell)
        names, event_boxes = _cells(files[e]), _cells(boxes[e])
        keep = {s: _cells(lists[s][e]) for s in SETTINGS}
        for j, name_cell in enumerate(names):
            b = np.asarray(event_boxes[j], np.float64).reshape(-1, 4)
            counted = {}
            for s in SETTINGS:
                idx = np.asarray(keep[s][j]).astype(np.int64).ravel() - 1  # the .mat lists are 1-based
                if idx.size and (idx.min() < 0 or idx.max() >= len(b)):
                    raise ValueError(
                        f"{root / f'wider_{s}_val.mat'}: face index {idx.max() + 1} out of range for "
                        f"{event}/{_text(name_cell)} ({len(b)} faces)"
                    )
                mask = np.zeros(len(b), bool)
                mask[idx] = True
                counted[s] = mask
            images.append(WiderImage(event, _text(name_cell), b, counted))
    log.info("WIDER FACE ground truth %s: %d images, %s faces counted", root, len(images),
             ", ".join(f"{s} {sum(int(i.counted[s].sum()) for i in images)}" for s in SETTINGS))
    return WiderGroundTruth(images, source=str(root))
