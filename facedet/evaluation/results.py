"""Read another detector's detections, so it is scored by the same evaluators as facedet's models.

Two formats:

- a COCO results json: a list of ``{"image_id", "bbox": [x, y, w, h], "score"}`` in original
  pixels (``category_id`` is ignored: every box is a face), each optionally with ``"landmarks"``:
  the five points (left eye, right eye, nose tip, left mouth corner, right mouth corner; left = the
  image's left) as 10 numbers x1, y1, ..., x5, y5 in original pixels, ``null`` for an absent
  point. ``image_id`` is a string (the image's path under the image folder as the data set names
  it, e.g. ``0--Parade/0_Parade_x_1_465.jpg``, or its file name without folder or extension when
  that is unique) or an integer: the ``id`` of an entry in the ``images`` of ``id_map`` (a COCO
  json) when given, else the val set's own image id (what facedet's own ``predictions.json``
  uses: the ``id`` in the val set's COCO json when it was read from one, else the 1-based
  position in the val set);
- a folder in the WIDER FACE submission layout: ``<event>/<image name>.txt`` holding the image
  name, the number of boxes, then ``x y w h score`` per line.

Every detection must name an image of the evaluated set: unknown images and malformed entries
(a NaN or infinite number among them: Python's json reads ``NaN`` and ``Infinity``) are errors
naming the file and the entry, never silently dropped or scored.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import torch

from facedet.evaluation.coco import coco_image_ids
from facedet.structures import IMAGE_SUFFIXES


class ImageIndex:
    """Finds a record's ``image_id`` from the many ways results name an image."""

    def __init__(self, records: Sequence[Any]) -> None:
        self.ids = [r.image_id for r in records]
        self.by_coco_id = dict(zip(coco_image_ids(records), self.ids, strict=True))  # predictions.json's ids
        self.exact = set(self.ids)
        self.by_key: dict[str, list[str]] = {}
        for i in self.ids:
            p = PurePosixPath(i.replace("\\", "/"))
            for key in (_strip(p.as_posix()), _strip(f"{p.parent.name}/{p.name}"), _strip(p.name)):
                self.by_key.setdefault(key, []).append(i)

    def find(self, name: str, where: str) -> str:
        if name in self.exact:
            return name
        p = PurePosixPath(str(name).replace("\\", "/"))
        for key in (_strip(p.as_posix()), _strip(f"{p.parent.name}/{p.name}"), _strip(p.name)):
            found = sorted(set(self.by_key.get(key, [])))
            if len(found) == 1:
                return found[0]
            if len(found) > 1:
                raise ValueError(f"{where}: image '{name}' is ambiguous in the val set ({', '.join(found[:3])})")
        raise ValueError(f"{where}: image '{name}' is not in the evaluated val set ({len(self.ids)} images)")


def _strip(name: str) -> str:
    """The name without an image extension."""
    p = PurePosixPath(name)
    return p.with_suffix("").as_posix() if p.suffix.lower() in IMAGE_SUFFIXES else p.as_posix()


def _empty() -> dict[str, list]:
    return {"boxes": [], "scores": [], "landmarks": []}


def _finish(per_image: dict[str, dict[str, list]], ids: Sequence[str], *, landmarks: bool = False
            ) -> dict[str, dict[str, torch.Tensor]]:
    """Per image ``{boxes xyxy, scores}``, plus ``landmarks (K, 5, 2)`` (NaN where a detection has
    none) for every image when ``landmarks``."""
    out = {}
    for i in ids:
        d = per_image.get(i, _empty())
        xywh = np.asarray(d["boxes"], np.float32).reshape(-1, 4)
        xyxy = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], 1)
        out[i] = {"boxes": torch.from_numpy(xyxy), "scores": torch.tensor(d["scores"], dtype=torch.float32)}
        if landmarks:
            pts = [p if p is not None else [math.nan] * 10 for p in d["landmarks"]]
            out[i]["landmarks"] = torch.tensor(np.asarray(pts, np.float32).reshape(-1, 5, 2))
    return out


def _landmarks(value: Any, where: str) -> list[float] | None:
    """A detection's optional ``landmarks``: 10 numbers x1, y1, ..., x5, y5 in original pixels;
    ``null`` for a point that is absent (what facedet writes for NaN) reads as NaN."""
    if value is None:
        return None
    if not isinstance(value, list) or len(value) != 10:
        raise ValueError(f"{where}: landmarks must be a list of 10 numbers x1, y1, ..., x5, y5, got {value!r}")
    try:
        pts = [math.nan if v is None else float(v) for v in value]
    except (TypeError, ValueError):
        raise ValueError(f"{where}: landmarks must be numbers (null for an absent point), got {value!r}") from None
    if any(math.isinf(v) for v in pts) or any(math.isnan(v) and value[k] is not None for k, v in enumerate(pts)):
        raise ValueError(f"{where}: landmarks must be finite numbers (null, not NaN, for an absent point), "
                         f"got {value!r}")
    return pts


def _parse_entry(e: Any, where: str) -> tuple[Any, list[float], float, list[float] | None]:
    """(image id, bbox x y w h, score, landmarks or None) of one results entry, checked."""
    try:
        image, bbox, score = e["image_id"], [float(v) for v in e["bbox"]], float(e["score"])
    except (KeyError, TypeError, ValueError):
        raise ValueError(f"{where}: expected {{image_id, bbox: [x, y, w, h], score}}, got {e!r}") from None
    if len(bbox) != 4:
        raise ValueError(f"{where}: bbox needs 4 numbers x y w h, got {bbox}")
    if not all(map(math.isfinite, [*bbox, score])):  # NaN would silently lower AP, inf raise it
        raise ValueError(f"{where}: bbox {bbox} and score {score} must be finite numbers (no NaN or Infinity)")
    return image, bbox, score, _landmarks(e.get("landmarks"), where)


def _image_name(image: Any, index: ImageIndex, names: dict[int, str], id_map: Any, where: str) -> str:
    """The record ``image_id`` a results entry's ``image_id`` names."""
    if isinstance(image, int) and not isinstance(image, bool):
        if names:
            if image not in names:
                raise ValueError(f"{where}: image id {image} is not in the images of {id_map}")
            image = names[image]
        elif image in index.by_coco_id:
            image = index.by_coco_id[image]
        else:
            known = sorted(k for k in index.by_coco_id if isinstance(k, int))
            span = f"{known[0]}..{known[-1]}" if known else "none"
            raise ValueError(f"{where}: image id {image} is not an image id of the val set (ids {span}; give "
                             f"results_images=<COCO json> when the ids are another json's)")
    elif isinstance(image, str) and image not in index.exact and image in index.by_coco_id:  # a string id
        image = index.by_coco_id[image]
    return index.find(str(image), where)


def read_coco_results(
    path: str | Path, records: Sequence[Any], *, id_map: str | Path | None = None
) -> dict[str, dict[str, torch.Tensor]]:
    """``{image_id: {boxes (K, 4) xyxy, scores (K,)}}`` for every record (empty where no detection),
    with ``landmarks (K, 5, 2)`` for every image when any entry has a ``landmarks`` list (NaN for
    the detections without one)."""
    path = Path(path)
    try:
        entries = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}:{e.lineno}: not valid JSON ({e.msg})") from None
    if isinstance(entries, dict) and "annotations" in entries:
        entries = entries["annotations"]  # a full COCO file with scored annotations
    if not isinstance(entries, list):
        raise ValueError(f"{path}: expected a COCO results list of {{image_id, bbox, score}}")
    index = ImageIndex(records)
    names: dict[int, str] = {}
    if id_map is not None:
        images = json.loads(Path(id_map).read_text()).get("images", [])
        names = {int(im["id"]): str(im["file_name"]) for im in images}
    per_image: dict[str, dict[str, list]] = {}
    any_points = False
    for n, e in enumerate(entries):
        where = f"{path} entry {n}"
        image, bbox, score, points = _parse_entry(e, where)
        d = per_image.setdefault(_image_name(image, index, names, id_map, where), _empty())
        d["boxes"].append(bbox)
        d["scores"].append(score)
        d["landmarks"].append(points)
        any_points = any_points or points is not None
    return _finish(per_image, index.ids, landmarks=any_points)


def read_wider_results(folder: str | Path, records: Sequence[Any]) -> dict[str, dict[str, torch.Tensor]]:
    """Detections in the WIDER FACE submission layout (one txt per image) for every record."""
    folder = Path(folder)
    files = sorted(folder.rglob("*.txt"))
    if not files:
        raise ValueError(f"{folder}: no <event>/<image>.txt detection files")
    index = ImageIndex(records)
    per_image: dict[str, dict[str, list]] = {}
    for f in files:
        lines = [ln for ln in f.read_text().splitlines() if ln.strip()]
        rel = f.relative_to(folder).with_suffix("").as_posix()
        try:
            count = int(lines[1])
        except (IndexError, ValueError):
            raise ValueError(f"{f}:2: expected the number of boxes after the image name") from None
        if len(lines) - 2 != count:
            raise ValueError(f"{f}: says {count} boxes but has {len(lines) - 2} box lines")
        d = per_image.setdefault(index.find(rel, str(f)), _empty())
        for k, line in enumerate(lines[2:], start=3):
            try:
                x, y, w, h, s = (float(v) for v in line.split()[:5])
            except ValueError:
                raise ValueError(f"{f}:{k}: expected 'x y w h score', got {line!r}") from None
            if not all(map(math.isfinite, (x, y, w, h, s))):  # float() reads nan and inf
                raise ValueError(f"{f}:{k}: x y w h score must be finite numbers (no nan or inf), got {line!r}")
            d["boxes"].append([x, y, w, h])
            d["scores"].append(s)
    return _finish(per_image, index.ids)


def read_results(path: str | Path, records: Sequence[Any], *, id_map: str | Path | None = None
                 ) -> dict[str, dict[str, torch.Tensor]]:
    """A COCO results json or a WIDER submission folder, as ``read_coco_results`` / ``read_wider_results``."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"results not found: {path}")
    return read_wider_results(path, records) if path.is_dir() else read_coco_results(path, records, id_map=id_map)
