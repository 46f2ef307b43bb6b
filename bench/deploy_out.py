"""bench/deploy.py's side of the adapter protocol: reading and checking an adapter's OUT.json, the
ground truth of a val set, and the numbers of a table row (AP50 through facedet's COCO evaluator,
latency median / p90, images/s).

OUT.json (written by ``bench/peers/<name>.py``):
  {"name", "versions": {pkg: version}, "input", "threads", "detections": {"<image path>": [[x1, y1, x2,
   y2, score], ...]} (original pixels), "latency_ms": [...], "seconds_total", "images"[, "points"]}
An image of the list without an entry in ``detections`` has no detections; a path that is not in the
list, a missing key or a malformed row is an error naming the file and the key.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import OmegaConf

from facedet.registry import ConfigError

ROOT = Path(__file__).resolve().parents[1]
REQUIRED: dict[str, tuple[type, ...]] = {
    "name": (str,), "versions": (dict,), "input": (str,), "threads": (int,), "detections": (dict,),
    "latency_ms": (list,), "seconds_total": (int, float), "images": (int,),
}


def load_out(path: str | Path, images: Sequence[str]) -> dict[str, Any]:
    """The checked content of an adapter's OUT.json for the image list ``images``."""
    path = Path(path)
    try:
        out = json.loads(path.read_text())
    except OSError as e:
        raise ConfigError(f"{path}: the adapter wrote no OUT.json ({e.strerror})") from None
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path}:{e.lineno}: not valid JSON ({e.msg})") from None
    if not isinstance(out, dict):
        raise ConfigError(f"{path}: expected a JSON object with keys {', '.join(REQUIRED)}")
    missing = [k for k in REQUIRED if k not in out]
    if missing:
        raise ConfigError(f"{path}: missing key(s) {', '.join(missing)} (bench protocol: {', '.join(REQUIRED)})")
    for key, types in REQUIRED.items():
        if not isinstance(out[key], types) or isinstance(out[key], bool):
            raise ConfigError(f"{path}: '{key}' must be {' or '.join(t.__name__ for t in types)}, "
                              f"got {type(out[key]).__name__}")
    if out["images"] != len(images):
        raise ConfigError(f"{path}: 'images' is {out['images']} but the list had {len(images)} images")
    if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in out["latency_ms"]):
        raise ConfigError(f"{path}: 'latency_ms' must be a list of finite numbers (milliseconds)")
    known = set(images)
    for image, rows in out["detections"].items():
        where = f"{path}: detections['{image}']"
        if image not in known:
            raise ConfigError(f"{where}: not an image of the list given to the adapter (paths must be as listed)")
        if not isinstance(rows, list):
            raise ConfigError(f"{where}: expected a list of [x1, y1, x2, y2, score] rows")
        for k, row in enumerate(rows):
            if (not isinstance(row, list) or len(row) != 5
                    or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in row)):
                raise ConfigError(f"{where}[{k}]: expected 5 finite numbers x1, y1, x2, y2, score, got {row!r}")
    return out


def data_config(name: str, root: str | Path | None = None) -> Any:
    """facedet's data config ``configs/data/<name>.yaml``, resolved, with ``root`` (default: the
    config's own root, relative to the repository)."""
    node = OmegaConf.load(ROOT / "configs" / "data" / f"{name}.yaml")
    cfg = OmegaConf.create({"data": node})
    base = Path(root) if root is not None else Path(str(node.root))
    cfg.data.root = str(base if base.is_absolute() else (ROOT / base).resolve())
    return OmegaConf.to_container(cfg, resolve=True)["data"]


def val_records(name: str, root: str | Path | None = None) -> list[Any]:
    """The val split's ground truth (facedet's readers: the records tools/eval.py scores against)."""
    from facedet.builders import build_dataset

    d = data_config(name, root)
    if not Path(d["root"]).is_dir():
        raise ConfigError(f"{name}: no data set at {d['root']} (give its folder: --{name}-root PATH)")
    return list(build_dataset(OmegaConf.create(d["val"]), img_size=int(d["img_size"]), aug=None, cache_images=False,
                              where=f"{name} val").records)


def image_paths(records: Sequence[Any]) -> list[str]:
    """The absolute image paths of ``records``, as written to LIST.txt."""
    return [str(Path(r.image_path).resolve()) for r in records]


def ap50(out: dict[str, Any], records: Sequence[Any]) -> float:
    """COCO AP at IoU 0.5 of ``out['detections']`` on ``records`` (facedet's COCOEvaluator)."""
    import torch

    from facedet.evaluation.coco import COCOEvaluator

    by_path = {str(Path(r.image_path).resolve()): r.image_id for r in records}
    ids, preds = [], []
    for path, image_id in by_path.items():
        rows = np.asarray(out["detections"].get(path, []), np.float32).reshape(-1, 5)
        ids.append(image_id)
        preds.append({"boxes": torch.from_numpy(rows[:, :4].copy()), "scores": torch.from_numpy(rows[:, 4].copy())})
    ev = COCOEvaluator(records)
    ev.update(preds, ids)
    return float(ev.compute()["AP50"])


def timing(out: dict[str, Any]) -> dict[str, float]:
    """Batch-1 latency median and p90 (ms) and images/s over the whole list (decode included)."""
    lat = np.asarray(out["latency_ms"], np.float64)
    nan = float("nan")
    return {"median_ms": float(np.median(lat)) if lat.size else nan,
            "p90_ms": float(np.percentile(lat, 90)) if lat.size else nan,
            "images_per_s": out["images"] / out["seconds_total"] if out["seconds_total"] > 0 else nan}
