"""COCO-style mAP through pycocotools, with ground truth built in memory from dataset records.

Faces marked ``ignore`` become COCO ``iscrowd`` regions: a detection on them is neither a true nor
a false positive, which is what ``ignore`` means everywhere in facedet.

Besides COCO's own AP_small/medium/large (area < 32^2, < 96^2, rest), AP50 is reported per face
size bucket: ``AP50_tiny`` (size < 16 px), ``AP50_small`` (16-32), ``AP50_medium`` (32-96) and
``AP50_large`` (>= 96), where size is sqrt(box area) in original image pixels (COCO's own measure,
about the width of a face box), with ``faces_<bucket>`` the number of faces in each. A bucket
without faces has AP NaN. pycocotools evaluates the buckets as extra area ranges, so detections of
another size are not counted as false positives there. Every metric pycocotools cannot measure
(its -1: no faces in that area range) is NaN, and all are NaN, with a warning, when the val set has
no faces that count: never a -1 that could pass for a score.

Image ids are the val set's own (``coco_image_ids``): the ``id`` of each image in its COCO json when
the data set was read from one, else the records' 1-based order. So ``predictions.json`` can be
scored by pycocotools directly against that json.
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from facedet.evaluation.base import EVALUATORS, to_json
from facedet.structures import xyxy_to_xywh

log = logging.getLogger(__name__)

# Faces crowd photos: COCO's default cap of 100 detections per image would cut recall.
DEFAULT_MAX_DETS = (10, 100, 1000)
# Face size buckets (sqrt of the box area in original pixels): name -> [lower, upper) in pixels.
SIZE_BUCKETS = {"tiny": (0, 16), "small": (16, 32), "medium": (32, 96), "large": (96, 1e5)}


def coco_image_ids(records: Sequence[Any]) -> list[int | str]:
    """The COCO image id of each record: its source json's ``id`` (``Record.coco_id``) when every
    record has one, all distinct and of one type (pycocotools sorts them); else 1, 2, ... in order."""
    ids = [getattr(r, "coco_id", None) for r in records]
    if ids and all(i is not None for i in ids) and len(set(ids)) == len(ids) and len({type(i) for i in ids}) == 1:
        return ids
    return list(range(1, len(records) + 1))


def records_to_coco(records: Sequence[Any]) -> dict[str, Any]:
    """COCO ground-truth dict from records with ``image_id``, ``orig_size``, ``boxes`` (xyxy) and
    ``ignore``. Image ids are ``coco_image_ids``; file names are the record ids."""
    images, anns = [], []
    for i, r in zip(coco_image_ids(records), records, strict=True):
        h, w = r.orig_size
        images.append({"id": i, "file_name": r.image_id, "height": int(h), "width": int(w)})
        xywh = xyxy_to_xywh(r.boxes)
        for box, ign in zip(xywh.tolist(), np.asarray(r.ignore).tolist(), strict=True):
            anns.append({
                "id": len(anns) + 1, "image_id": i, "category_id": 1, "bbox": box,
                "area": float(box[2] * box[3]), "iscrowd": int(ign),
            })
    return {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "face"}]}


@EVALUATORS.register("coco")
class COCOEvaluator:
    """Accumulates detections in original image pixels and computes AP50:95, AP50, AP75, AR and
    AP50 per face size.

    ``update(predictions, image_ids)`` takes per-image dicts ``{boxes xyxy, scores}`` (and
    ``landmarks (K, 5, 2)`` when the model predicts them: written to the results json as a
    ``landmarks`` list of 10 numbers x1, y1, ..., x5, y5 per detection) and the matching record
    ``image_id`` strings; ``compute()`` returns a dict of metrics.
    """

    metric_names = ("AP", "AP50", "AP75", "AP_small", "AP_medium", "AP_large", "AR") + tuple(
        f"AP50_{b}" for b in SIZE_BUCKETS
    )

    def __init__(self, records: Sequence[Any], *, max_dets: Sequence[int] = DEFAULT_MAX_DETS) -> None:
        self.gt_dict = records_to_coco(records)
        self.id_of = {img["file_name"]: img["id"] for img in self.gt_dict["images"]}
        self.max_dets = list(max_dets)
        self.results: list[dict[str, Any]] = []
        self.curves: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def reset(self) -> None:
        self.results = []
        self.curves = {}

    def update(self, predictions: Sequence[dict[str, torch.Tensor]], image_ids: Sequence[str]) -> None:
        for pred, name in zip(predictions, image_ids, strict=True):
            if name not in self.id_of:
                raise KeyError(f"prediction for unknown image '{name}'")
            boxes = xyxy_to_xywh(pred["boxes"].detach().cpu().numpy())
            scores = pred["scores"].detach().cpu().numpy()
            img_id = self.id_of[name]
            entries = [
                {"image_id": img_id, "category_id": 1, "bbox": [round(v, 2) for v in b], "score": round(s, 5)}
                for b, s in zip(boxes.tolist(), scores.tolist(), strict=True)
            ]
            if pred.get("landmarks") is not None:  # x1, y1, ..., x5, y5 per detection (NaN -> null in the json)
                points = pred["landmarks"].detach().cpu().reshape(len(entries), -1).tolist()
                for e, p in zip(entries, points, strict=True):
                    e["landmarks"] = [round(v, 2) for v in p]
            self.results.extend(entries)

    def write_results(self, path: str | Path) -> None:
        """The COCO results json (the format pycocotools and other tools read)."""
        Path(path).write_text(to_json(self.results))

    def compute(self) -> dict[str, float]:
        gt = COCO()
        gt.dataset = self.gt_dict
        with contextlib.redirect_stdout(io.StringIO()):
            gt.createIndex()
        self.curves = {}
        faces = self.faces_per_bucket()
        counts = {f"faces_{b}": n for b, n in faces.items()} | {"num_detections": len(self.results)}
        if not sum(faces.values()):  # pycocotools would report -1 everywhere
            log.warning("nothing to evaluate: the %d val images have no faces that count (%d ignored faces); "
                        "every COCO metric is NaN (null in metrics.json) and no epoch is marked best",
                        len(self.gt_dict["images"]), len(self.gt_dict["annotations"]))
            return dict.fromkeys(self.metric_names, math.nan) | counts
        if not self.results:  # pycocotools cannot load an empty result list
            # COCO's small/medium/large areas are the tiny+small/medium/large buckets: NaN where empty, as below
            coco_areas = {"AP_small": faces["tiny"] + faces["small"], "AP_medium": faces["medium"],
                          "AP_large": faces["large"]} | {f"AP50_{b}": n for b, n in faces.items()}
            zero = dict.fromkeys(self.metric_names, 0.0) | {k: 0.0 if n else math.nan for k, n in coco_areas.items()}
            return zero | counts
        with contextlib.redirect_stdout(io.StringIO()) as out:
            dt = gt.loadRes(self.results)
            ev = COCOeval(gt, dt, iouType="bbox")
            ev.params.maxDets = self.max_dets
            # extra area ranges after COCO's four; summarize() finds its own by label, so they stay as they were
            ev.params.areaRng = list(ev.params.areaRng) + [[lo**2, hi**2] for lo, hi in SIZE_BUCKETS.values()]
            ev.params.areaRngLbl = list(ev.params.areaRngLbl) + [f"face_{b}" for b in SIZE_BUCKETS]
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
        self.summary_text = out.getvalue()
        s = [float(v) if v > -1 else math.nan for v in ev.stats]  # -1: no faces in that area range
        precision = ev.eval["precision"]  # (IoU thresholds, recall points, classes, area ranges, max dets)
        metrics = {
            "AP": s[0], "AP50": s[1], "AP75": s[2], "AP_small": s[3], "AP_medium": s[4], "AP_large": s[5],
            "AR": s[8], "num_detections": len(self.results),
        }
        for a, b in enumerate(SIZE_BUCKETS, start=4):
            p = precision[0, :, 0, a, -1]  # IoU 0.5, the largest max-dets
            metrics[f"AP50_{b}"] = float(p[p > -1].mean()) if (p > -1).any() else float("nan")
            metrics[f"faces_{b}"] = faces[b]
        p50 = precision[0, :, 0, 0, -1]
        valid = p50 > -1
        self.curves = {"COCO AP50": (np.asarray(ev.params.recThrs)[valid], p50[valid])}
        return metrics

    def faces_per_bucket(self) -> dict[str, int]:
        """Faces that count (not ignored) per size bucket."""
        sizes = np.sqrt([a["area"] for a in self.gt_dict["annotations"] if not a["iscrowd"]])
        return {b: int(((sizes >= lo) & (sizes < hi)).sum()) for b, (lo, hi) in SIZE_BUCKETS.items()}

    def pr_curves(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """The COCO precision-recall curve at IoU 0.5 (101 recall points) of the last ``compute``."""
        return dict(self.curves)
