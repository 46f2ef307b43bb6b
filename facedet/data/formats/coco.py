"""COCO detection json: ``images`` (id, file_name, width, height), ``annotations`` (image_id,
bbox ``[x, y, w, h]`` in pixels, iscrowd, optional 5-point ``keypoints`` ``[x, y, v] * 5``).

Every category counts as a face. ``iscrowd = 1`` (or ``ignore = 1``) makes a face ``ignore``;
keypoints with visibility 0 are absent (NaN). facedet also writes and reads an optional
``attributes`` dict per annotation (the WIDER FACE attributes), so WIDER -> COCO -> WIDER is lossless.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from facedet.data.records import (
    LANDMARK_NAMES,
    WIDER_ATTRIBUTES,
    LabelError,
    LoadStats,
    Record,
    check_new_image,
    landmarks_from_points,
    make_record,
    resolve_image,
)


def _numbers(value: Any, n: int, where: str) -> np.ndarray:
    """A list of ``n`` finite numbers, or a LabelError naming ``where``."""
    if not isinstance(value, list) or len(value) != n or not all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in value
    ):
        raise LabelError(f"{where}: expected a list of {n} numbers, got {json.dumps(value)[:80]}")
    try:
        arr = np.asarray(value, np.float64)
    except OverflowError:  # a json integer beyond float range (1e400 written out)
        arr = np.full(n, np.inf)
    if not np.isfinite(arr).all():
        raise LabelError(f"{where}: non-finite number in {value}")
    return arr


def _load(ann_file: Path) -> dict[str, Any]:
    try:
        data = json.loads(ann_file.read_bytes().decode("utf-8-sig"))
    except UnicodeDecodeError as e:
        line = ann_file.read_bytes()[: e.start].count(b"\n") + 1
        raise LabelError(f"{ann_file}:{line}: not UTF-8 text ({e.reason}); is this a COCO json file?") from None
    except json.JSONDecodeError as e:
        raise LabelError(f"{ann_file}:{e.lineno}: not valid JSON ({e.msg})") from None
    except RecursionError:
        raise LabelError(f"{ann_file}: JSON nested too deeply; not a COCO detection file") from None
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise LabelError(f"{ann_file}: not a COCO detection file (no 'images' list)")
    if not isinstance(data.get("annotations", []), list):
        raise LabelError(f"{ann_file}: 'annotations' must be a list")
    return data


def read_coco_json(ann_file: str | Path, img_dir: str | Path) -> tuple[list[Record], LoadStats]:
    """Read COCO detection json -> (records, stats). Images without annotations are kept with 0
    faces; annotations of unknown images are dropped and counted. Malformed entries raise
    ``LabelError`` naming the file and the entry (``images[i]`` / ``annotations[i]``)."""
    ann_file, img_dir = Path(ann_file), Path(img_dir)
    data = _load(ann_file)
    stats = LoadStats(source=f"coco_json {ann_file}")
    by_image = _annotations_by_image(data, ann_file, stats)
    records: list[Record] = []
    for img in data["images"]:
        anns, name = by_image[img["id"]], img["file_name"]
        xywh, ignore, lm, attrs = _faces(anns, ann_file)
        path = img_dir / name
        got = resolve_image(stats, path, len(anns), _image_size(img, ann_file))
        if got is None:
            continue
        rec = make_record(stats, path, name, xywh, ignore, got, lm, attrs)
        rec.coco_id = img["id"]  # predictions.json uses the json's own image ids
        records.append(rec)
    return records, stats


def _annotations_by_image(data: dict[str, Any], ann_file: Path,
                          stats: LoadStats) -> dict[Any, list[tuple[int, dict[str, Any]]]]:
    """Image id -> its ``(index, annotation)`` pairs, every image listed (checked: ids and file
    names unique); annotations of unknown images are dropped and counted."""
    by_image: dict[Any, list[tuple[int, dict[str, Any]]]] = {}
    seen: dict[str, str] = {}
    for k, img in enumerate(data["images"]):
        where = f"{ann_file}: images[{k}]"
        if not isinstance(img, dict) or "id" not in img or not isinstance(img.get("file_name"), str):
            raise LabelError(f"{where}: needs 'id' and 'file_name', got {json.dumps(img)[:80]}")
        if not isinstance(img["id"], (int, str)) or img["id"] in by_image:
            raise LabelError(f"{where}: image id {img['id']!r} is not an int/str or is used twice")
        check_new_image(seen, img["file_name"], where)
        by_image[img["id"]] = []
    for k, ann in enumerate(data.get("annotations", [])):
        if not isinstance(ann, dict):
            raise LabelError(f"{ann_file}: annotations[{k}]: expected an object, got {json.dumps(ann)[:80]}")
        key = ann.get("image_id")
        if not isinstance(key, (int, str)) or key not in by_image:
            stats.dropped["unknown_image_id"] += 1
            stats.examples.setdefault("unknown_image_id", f"{ann_file}: annotations[{k}] image_id {key!r}")
            continue
        by_image[key].append((k, ann))
    return by_image


def _faces(anns: list[tuple[int, dict[str, Any]]], ann_file: Path):
    """The faces of one image's annotations: xywh boxes, ignore flags, landmarks and the WIDER
    attributes (None when no annotation has any)."""
    n = len(anns)
    xywh = np.zeros((n, 4), np.float64)
    ignore = np.zeros(n, bool)
    xy, absent = np.zeros((n, 5, 2)), np.ones((n, 5), bool)
    attrs = np.full((n, len(WIDER_ATTRIBUTES)), -1, np.int16)
    has_attrs = False
    for j, (k, a) in enumerate(anns):
        where = f"{ann_file}: annotations[{k}] (id {a.get('id')})"
        xywh[j] = _numbers(a.get("bbox"), 4, f"{where} bbox")
        for key in ("iscrowd", "ignore"):
            if a.get(key, 0) not in (0, 1):  # "0" or [1] would read as true: a face silently ignored
                raise LabelError(f"{where} {key}: expected 0 or 1, got {json.dumps(a[key])[:80]}")
        ignore[j] = bool(a.get("iscrowd", 0) or a.get("ignore", 0))
        if a.get("keypoints") is not None:
            kp = _numbers(a["keypoints"], 15, f"{where} keypoints (5 face landmarks x, y, v)").reshape(5, 3)
            xy[j], absent[j] = kp[:, :2], kp[:, 2] <= 0
        if isinstance(a.get("attributes"), dict):
            has_attrs = True
            for c, col in enumerate(WIDER_ATTRIBUTES):
                v = a["attributes"].get(col, -1)
                if not isinstance(v, int) or isinstance(v, bool) or abs(v) > 1000:
                    raise LabelError(f"{where} attributes.{col}: expected a small integer, got {v!r}")
                attrs[j, c] = v
    return xywh, ignore, landmarks_from_points(xy, absent), attrs if has_attrs else None


def _image_size(img: dict[str, Any], ann_file: Path) -> tuple[int, int] | None:
    """The (height, width) an images entry states, checked; None when it states none."""
    if "height" not in img or "width" not in img:
        return None
    h, w = img["height"], img["width"]
    if not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in (h, w)):
        raise LabelError(f"{ann_file}: images entry {img['id']!r}: width/height must be positive integers")
    return h, w


def write_coco_json(records: Sequence[Record], out_file: str | Path) -> None:
    """Write records as COCO json (one category ``face``; ``ignore`` as ``iscrowd``; landmarks as
    ``keypoints`` with v = 2, or 0 where absent; WIDER attributes as ``attributes``)."""
    images, anns = [], []
    for i, r in enumerate(records, 1):
        h, w = r.orig_size
        images.append({"id": i, "file_name": r.image_id, "width": int(w), "height": int(h)})
        b = r.boxes.astype(np.float64)
        for k in range(len(b)):
            x1, y1, x2, y2 = b[k].tolist()
            ann: dict[str, Any] = {
                "id": len(anns) + 1, "image_id": i, "category_id": 1, "bbox": [x1, y1, x2 - x1, y2 - y1],
                "area": (x2 - x1) * (y2 - y1), "iscrowd": int(r.ignore[k]),
            }
            lm = r.landmarks[k].astype(np.float64)
            if np.isfinite(lm).any():
                ok = np.isfinite(lm).all(1)
                ann["keypoints"] = [v for p, good in zip(lm, ok, strict=True)
                                    for v in ([p[0], p[1], 2] if good else [0, 0, 0])]
                ann["num_keypoints"] = int(ok.sum())
            if r.attributes is not None:
                ann["attributes"] = dict(zip(WIDER_ATTRIBUTES, r.attributes[k].tolist(), strict=True))
            anns.append(ann)
    cat = {"id": 1, "name": "face", "supercategory": "face", "keypoints": LANDMARK_NAMES, "skeleton": []}
    path = Path(out_file)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"images": images, "annotations": anns, "categories": [cat]}))
