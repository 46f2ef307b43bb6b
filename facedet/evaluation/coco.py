"""COCO-style mAP through pycocotools, with ground truth built in memory from dataset records.

Faces marked ``ignore`` become COCO ``iscrowd`` regions: a detection on them is neither a true nor
a false positive, which is what ``ignore`` means everywhere in facedet.
"""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from facedet.structures import xyxy_to_xywh

# Faces crowd photos: COCO's default cap of 100 detections per image would cut recall.
DEFAULT_MAX_DETS = (10, 100, 1000)


def records_to_coco(records: Sequence[Any]) -> dict[str, Any]:
    """COCO ground-truth dict from records with ``image_id``, ``orig_size``, ``boxes`` (xyxy) and
    ``ignore``. Image ids are the records' order (1-based); file names are the record ids."""
    images, anns = [], []
    for i, r in enumerate(records, 1):
        h, w = r.orig_size
        images.append({"id": i, "file_name": r.image_id, "height": int(h), "width": int(w)})
        xywh = xyxy_to_xywh(r.boxes)
        for box, ign in zip(xywh.tolist(), np.asarray(r.ignore).tolist(), strict=True):
            anns.append({
                "id": len(anns) + 1, "image_id": i, "category_id": 1, "bbox": box,
                "area": float(box[2] * box[3]), "iscrowd": int(ign),
            })
    return {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "face"}]}


class COCOEvaluator:
    """Accumulates detections in original image pixels and computes AP50:95, AP50, AP75, AR.

    ``update(predictions, image_ids)`` takes per-image dicts ``{boxes xyxy, scores}`` and the
    matching record ``image_id`` strings; ``compute()`` returns a dict of metrics.
    """

    def __init__(self, records: Sequence[Any], *, max_dets: Sequence[int] = DEFAULT_MAX_DETS) -> None:
        self.gt_dict = records_to_coco(records)
        self.id_of = {img["file_name"]: img["id"] for img in self.gt_dict["images"]}
        self.max_dets = list(max_dets)
        self.results: list[dict[str, Any]] = []

    def reset(self) -> None:
        self.results = []

    def update(self, predictions: Sequence[dict[str, torch.Tensor]], image_ids: Sequence[str]) -> None:
        for pred, name in zip(predictions, image_ids, strict=True):
            if name not in self.id_of:
                raise KeyError(f"prediction for unknown image '{name}'")
            boxes = xyxy_to_xywh(pred["boxes"].detach().cpu().numpy())
            scores = pred["scores"].detach().cpu().numpy()
            img_id = self.id_of[name]
            self.results.extend(
                {"image_id": img_id, "category_id": 1, "bbox": [round(v, 2) for v in b], "score": round(s, 5)}
                for b, s in zip(boxes.tolist(), scores.tolist(), strict=True)
            )

    def write_results(self, path: str | Path) -> None:
        """The COCO results json (the format pycocotools and other tools read)."""
        Path(path).write_text(json.dumps(self.results))

    def compute(self) -> dict[str, float]:
        gt = COCO()
        gt.dataset = self.gt_dict
        with contextlib.redirect_stdout(io.StringIO()):
            gt.createIndex()
        if not self.results:  # pycocotools cannot load an empty result list
            return dict.fromkeys(("AP", "AP50", "AP75", "AR"), 0.0) | {"num_detections": 0}
        with contextlib.redirect_stdout(io.StringIO()) as out:
            dt = gt.loadRes(self.results)
            ev = COCOeval(gt, dt, iouType="bbox")
            ev.params.maxDets = self.max_dets
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
        self.summary_text = out.getvalue()
        s = ev.stats
        return {
            "AP": float(s[0]), "AP50": float(s[1]), "AP75": float(s[2]),
            "AP_small": float(s[3]), "AP_medium": float(s[4]), "AP_large": float(s[5]),
            "AR": float(s[8]), "num_detections": len(self.results),
        }
