"""WIDER FACE Easy / Medium / Hard AP by the official protocol (``eval_tools`` of the WIDER FACE
release, MATLAB, and its widely used Python port), on the full val set or any subset of it.

Ground truth comes from the official .mat files (``facedet/evaluation/wider_ground_truth.py`` reads
every face's box and, per setting, whether it counts or is ignored). The protocol, step by step as
the official code does it:

1. scores are min-max normalised over every prediction of the evaluated images;
2. per image, predictions sorted by score take their highest-IoU face (pixel-inclusive IoU, the
   official ``+1`` convention); IoU >= 0.5 on a face outside the setting's list makes the
   prediction ignored (neither TP nor FP), on a counted face it recalls that face once (later
   matches of the same face are false positives); images with no faces or no predictions are
   skipped (a false positive on a face-less image costs nothing, as in the official code);
3. precision and recall at 1000 score thresholds ``1 - t/1000``: precision = faces recalled /
   predictions that are not ignored, recall = faces recalled / faces that count;
4. AP is the VOC all-point area under that curve.

No pip package implements this protocol (``python-widerface`` only parses the txt files), so it is
written here, vectorised per image with ``torchvision.ops.box_iou``. Two degenerate cases differ on
purpose: when every score is equal (the official code divides by zero) all are normalised to 1, and
a precision of 0/0 is skipped by the envelope as MATLAB's ``max`` skips NaN.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torchvision.ops import box_iou

from facedet.evaluation.base import EVALUATORS, to_numpy_prediction
from facedet.evaluation.wider_ground_truth import GT_FILE, SETTINGS, WiderGroundTruth, WiderImage

__all__ = ["GT_FILE", "NUM_THRESHOLDS", "SETTINGS", "WiderFaceEvaluator", "WiderGroundTruth", "WiderImage",
           "best_matches", "evaluate_wider", "image_matches", "normalise_scores", "scores_above",
           "setting_matches", "threshold_counts", "voc_ap"]

log = logging.getLogger(__name__)

NUM_THRESHOLDS = 1000


def best_matches(boxes: np.ndarray, gt_xywh: np.ndarray, iou_thresh: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """Each prediction's highest-IoU face and whether that IoU reaches ``iou_thresh``: ``(best (P,),
    hit (P,) bool)`` for predictions ``boxes`` (P, 4) xyxy and faces ``gt_xywh`` (G, 4), G >= 1."""
    gt = np.asarray(gt_xywh, np.float64).reshape(-1, 4)
    gt_xyxy = np.concatenate([gt[:, :2], gt[:, :2] + gt[:, 2:]], 1)
    one = np.array([0.0, 0.0, 1.0, 1.0])  # the official overlap counts pixels inclusively (+1)
    iou = box_iou(torch.from_numpy(np.asarray(boxes, np.float64) + one), torch.from_numpy(gt_xyxy + one)).numpy()
    best = iou.argmax(1)  # the first of equal maxima, as MATLAB's max and numpy's argmax
    return best, iou[np.arange(len(best)), best] >= iou_thresh


def setting_matches(best: np.ndarray, hit: np.ndarray, counted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``proposal`` (P,): 1 for a prediction that counts, -1 for one matched to an ignored face; and
    ``recalled`` (P,): faces recalled by the first i + 1 predictions (sorted by descending score)."""
    on_counted = counted[best]
    proposal = np.where(hit & ~on_counted, -1, 1)
    counted_hits = np.flatnonzero(hit & on_counted)
    _, first = np.unique(best[counted_hits], return_index=True)  # a face is recalled once
    new = np.zeros(len(best), np.int64)
    new[counted_hits[first]] = 1
    return proposal, np.cumsum(new)


def image_matches(
    boxes: np.ndarray, gt_xywh: np.ndarray, counted: np.ndarray, iou_thresh: float = 0.5
) -> tuple[np.ndarray, np.ndarray]:
    """One image, predictions ``boxes`` (P, 4) xyxy sorted by descending score -> ``(proposal,
    recalled)`` as ``setting_matches`` gives them (the official ``image_evaluation``)."""
    return setting_matches(*best_matches(boxes, gt_xywh, iou_thresh), np.asarray(counted, bool))


def scores_above(scores: np.ndarray, num_thresholds: int = NUM_THRESHOLDS) -> np.ndarray:
    """``(T,)``: how many of the descending ``scores`` are >= ``1 - (t + 1) / T``, t = 0 .. T-1."""
    thresholds = 1 - (np.arange(num_thresholds) + 1) / num_thresholds
    return np.searchsorted(-np.asarray(scores, np.float64), -thresholds, side="right")


def threshold_counts(n_above: np.ndarray, proposal: np.ndarray, recalled: np.ndarray) -> np.ndarray:
    """``(T, 2)``: predictions that count and faces recalled among the ``n_above[t]`` best predictions
    (the official ``image_pr_info``)."""
    cum_prop = np.concatenate([[0], np.cumsum(proposal == 1)])
    cum_rec = np.concatenate([[0], recalled])
    return np.stack([cum_prop[n_above], cum_rec[n_above]], 1).astype(np.float64)


def voc_ap(recall: np.ndarray, precision: np.ndarray) -> float:
    """VOC all-point AP: area under the precision envelope; NaN precisions are skipped by the
    envelope (``fmax``), as MATLAB's ``max`` in the official code skips them."""
    mrec = np.concatenate([[0.0], recall, [1.0]])
    mpre = np.concatenate([[0.0], precision, [0.0]])
    mpre = np.fmax.accumulate(mpre[::-1])[::-1]
    i = np.flatnonzero(mrec[1:] != mrec[:-1])
    return float(np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1]))


def normalise_scores(predictions: Mapping[str, tuple[np.ndarray, np.ndarray]]) -> dict[str, np.ndarray]:
    """Min-max normalised scores over the whole set (all equal -> all 1)."""
    scores = [s for _, s in predictions.values() if len(s)]
    if not scores:
        return {k: s for k, (_, s) in predictions.items()}
    lo = min(float(s.min()) for s in scores)
    hi = max(float(s.max()) for s in scores)
    span = hi - lo
    return {k: (s - lo) / span if span > 0 else np.ones_like(s) for k, (_, s) in predictions.items()}


def evaluate_wider(
    predictions: Mapping[str, tuple[np.ndarray, np.ndarray]],
    gt: WiderGroundTruth,
    image_keys: Sequence[str],
    *,
    iou_thresh: float = 0.5,
    num_thresholds: int = NUM_THRESHOLDS,
) -> dict[str, dict[str, Any]]:
    """Per setting ``{ap, precision (T,), recall (T,), faces}`` over the images ``image_keys``.

    ``predictions`` maps ``event/name`` keys to ``(boxes (P, 4) xyxy original pixels, scores (P,))``;
    an evaluated image without an entry has no predictions.
    """
    preds = {k: predictions[k] for k in image_keys if k in predictions}
    norm = normalise_scores(preds)
    counts = {s: np.zeros((num_thresholds, 2)) for s in SETTINGS}
    faces = dict.fromkeys(SETTINGS, 0)
    for key in image_keys:
        img = gt.images[key]
        for s in SETTINGS:
            faces[s] += int(img.counted[s].sum())
        if key not in preds or len(norm[key]) == 0 or len(img.boxes) == 0:
            continue  # as the official code: nothing to match
        order = np.argsort(-norm[key], kind="stable")
        best, hit = best_matches(preds[key][0][order], img.boxes, iou_thresh)  # the same in every setting
        n_above = scores_above(norm[key][order], num_thresholds)
        for s in SETTINGS:
            counts[s] += threshold_counts(n_above, *setting_matches(best, hit, img.counted[s]))
    out = {}
    for s in SETTINGS:
        with np.errstate(invalid="ignore", divide="ignore"):
            precision = counts[s][:, 1] / counts[s][:, 0]
        recall = counts[s][:, 1] / faces[s] if faces[s] else np.zeros(num_thresholds)
        ap = voc_ap(recall, precision) if faces[s] else float("nan")
        out[s] = {"ap": ap, "precision": precision, "recall": recall, "faces": faces[s]}
    return out


@EVALUATORS.register("widerface")
class WiderFaceEvaluator:
    """WIDER FACE Easy / Medium / Hard AP (``wider_easy``, ``wider_medium``, ``wider_hard``).

    ``gt_dir`` holds the official .mat files. The evaluated images are those of ``records`` (the
    val data set, given by the framework) or ``image_ids``; with neither, the images that received
    ``update`` calls. Every evaluated image must be in the ground truth (a clear error otherwise).
    """

    metric_names = ("wider_easy", "wider_medium", "wider_hard")

    def __init__(
        self,
        *,
        gt_dir: str,
        records: Sequence[Any] | None = None,
        image_ids: Sequence[str] | None = None,
        iou_thresh: float = 0.5,
        num_thresholds: int = NUM_THRESHOLDS,
    ) -> None:
        if not 0 < iou_thresh <= 1 or num_thresholds < 1:
            raise ValueError(f"need 0 < iou_thresh <= 1 and num_thresholds >= 1, got {iou_thresh}, {num_thresholds}")
        self.gt = WiderGroundTruth.from_dir(gt_dir)
        self.iou_thresh = float(iou_thresh)
        self.num_thresholds = int(num_thresholds)
        ids = list(image_ids) if image_ids is not None else [r.image_id for r in records or []]
        self.image_keys: list[str] | None = self._keys(ids) if ids else None
        self.reset()

    def _keys(self, image_ids: Sequence[str]) -> list[str]:
        keys, unknown = [], []
        for i in image_ids:
            try:
                keys.append(self.gt.key_of(i))
            except KeyError:
                unknown.append(i)
        if unknown:
            raise ValueError(
                f"{len(unknown)} of {len(image_ids)} images are not in the WIDER FACE ground truth "
                f"{self.gt.source} (e.g. {', '.join(map(str, unknown[:3]))}); the WIDER protocol needs WIDER "
                "val images (WIDER_val/images/<event>/<name>.jpg)"
            )
        return keys

    def reset(self) -> None:
        self.predictions: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self.results: dict[str, dict[str, Any]] = {}

    def update(self, predictions: Sequence[Mapping[str, Any]], image_ids: Sequence[str]) -> None:
        for pred, image_id in zip(predictions, image_ids, strict=True):
            self.predictions[self.gt.key_of(image_id)] = to_numpy_prediction(pred)

    def compute(self) -> dict[str, Any]:
        keys = self.image_keys if self.image_keys is not None else list(self.predictions)
        self.results = evaluate_wider(self.predictions, self.gt, keys, iou_thresh=self.iou_thresh,
                                      num_thresholds=self.num_thresholds)
        for s, r in self.results.items():
            if not r["faces"]:
                log.warning("WIDER %s: none of the %d evaluated images has a face that counts; AP is NaN", s, len(keys))
        return {f"wider_{s}": r["ap"] for s, r in self.results.items()} | {"wider_images": len(keys)}

    def pr_curves(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        return {f"WIDER {s}": (r["recall"], r["precision"]) for s, r in self.results.items() if r["faces"]}
