"""How well anchors fit a data set: average IoU, best possible recall (BPR) at the assignment
threshold, and both per face-size bucket; the check that runs at the start of training.

The faces are the data set's non-ignored boxes after letterboxing to the training size (what the
assigner sees, before augmentation). The best possible recall is the fraction of faces whose best
anchor has shape IoU above the assigner's ``anchor_iou``: the YOLOv4 assigner still gives every other
face its best anchor, but one that fits badly, so those faces learn slowly or not at all.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from torch import Tensor

from facedet.anchors.kmeans import shape_iou

log = logging.getLogger(__name__)

SIZE_EDGES = (0, 8, 16, 32, 64, 128, 256)  # sqrt(w * h) in input pixels
BPR_WARN = 0.98


def letterboxed_wh(records: Sequence[Any], img_size: int, *, min_face_size: float = 0.0) -> tuple[np.ndarray, int]:
    """(``(N, 2)`` width/height in input pixels of the non-ignored faces after letterboxing to
    ``img_size``, number of faces left out because their shorter side is below ``min_face_size``)."""
    parts = []
    for r in records:
        keep = ~np.asarray(r.ignore, bool)
        if keep.any():
            b = np.asarray(r.boxes, np.float64)[keep]
            parts.append((b[:, 2:] - b[:, :2]) * (img_size / max(r.orig_size)))
    wh = np.concatenate(parts) if parts else np.zeros((0, 2))
    small = wh.min(1) < min_face_size if len(wh) else np.zeros(0, bool)
    return wh[~small], int(small.sum())


@dataclass
class AnchorReport:
    """Fit of ``anchors`` to ``n`` faces. ``buckets``: (low, high, faces, BPR, avg IoU) per size."""

    anchors: np.ndarray
    anchor_iou: float  # the assigner's shape-IoU threshold for positives
    n: int
    avg_iou: float
    bpr: float
    anchors_per_face: float  # anchors above anchor_iou per face (the assigner's positives per face)
    buckets: list[tuple[float, float, int, float, float]] = field(default_factory=list)
    too_small: int = 0  # faces below min_face_size (ignored in training, not in the figures)

    def table(self) -> str:
        lines = [f"{'face size (px)':>16} {'faces':>7} {'BPR':>6} {'avg IoU':>8}"]
        for lo, hi, n, bpr, iou in self.buckets:
            rng = f"{lo:g}-{hi:g}" if np.isfinite(hi) else f">= {lo:g}"
            lines.append(f"{rng:>16} {n:>7d} {bpr:>6.3f} {iou:>8.3f}")
        return "\n".join(lines)

    def summary(self) -> str:
        return (f"anchors fit {self.n} faces: avg IoU {self.avg_iou:.3f}, best possible recall {self.bpr:.4f} "
                f"(IoU > anchor_iou={self.anchor_iou:g}), {self.anchors_per_face:.2f} anchors per face")


def anchor_report(wh: np.ndarray, anchors: np.ndarray, anchor_iou: float, *, too_small: int = 0) -> AnchorReport:
    """The report for faces ``wh`` ``(N, 2)`` and anchors ``(K, 2)`` (all levels together)."""
    anchors = np.asarray(anchors, np.float64).reshape(-1, 2)
    iou = shape_iou(wh, anchors) if len(wh) else np.zeros((0, len(anchors)))
    best = iou.max(1) if len(wh) else np.zeros(0)
    size = np.sqrt(wh.prod(1)) if len(wh) else np.zeros(0)
    edges = [*SIZE_EDGES, np.inf]
    buckets = []
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        m = (size >= lo) & (size < hi)
        if m.any():
            bpr = float((best[m] > anchor_iou).mean())
            buckets.append((float(lo), float(hi), int(m.sum()), bpr, float(best[m].mean())))
    return AnchorReport(
        anchors=anchors, anchor_iou=float(anchor_iou), n=len(wh),
        avg_iou=float(best.mean()) if len(wh) else 0.0,
        bpr=float((best > anchor_iou).mean()) if len(wh) else 0.0,
        anchors_per_face=float((iou > anchor_iou).sum(1).mean()) if len(wh) else 0.0,
        buckets=buckets, too_small=too_small,
    )


def check_anchors(
    records: Sequence[Any], anchors: Any, *, img_size: int, anchor_iou: float, min_face_size: float = 0.0,
    data_name: str = "<data>",
) -> AnchorReport:
    """At training start: log how the model's anchors fit the training faces; warn, saying why and
    what to do, when the best possible recall is below 0.98 or many faces are below the minimum size."""
    wh, small = letterboxed_wh(records, img_size, min_face_size=min_face_size)
    rep = anchor_report(wh, np.asarray(anchors, np.float64), anchor_iou, too_small=small)
    total = len(wh) + small
    if total == 0:
        log.warning("the training set has no (non-ignored) faces: nothing to learn; check the load summary")
        return rep
    if small > 0.2 * total:
        log.warning("%d of %d training faces (%.0f%%) have a side below aug.min_face_size=%g px after "
                    "letterboxing to %d: they are ignored in training; lower aug.min_face_size or raise "
                    "data.img_size", small, total, 100 * small / total, min_face_size, img_size)
    if rep.n and rep.bpr < BPR_WARN:
        worst = min(rep.buckets, key=lambda b: b[3])
        log.warning(
            "%s. Only %.1f%% of the training faces have an anchor of shape IoU > %g (below %.0f%%): the rest "
            "get just their best anchor, which fits badly, so they train slowly or never (a common cause of "
            "low AP with no other sign). Worst: faces of %g-%g px (BPR %.3f). Fit anchors to this data: "
            "python tools/kmeans_anchors.py data=%s data.img_size=%d, then train with anchors=<name>.\n%s",
            rep.summary(), 100 * rep.bpr, anchor_iou, 100 * BPR_WARN, worst[0], worst[1], worst[3], data_name,
            img_size, rep.table())
    else:
        log.info("%s", rep.summary())
    return rep


def check_training_anchors(
    records: Sequence[Any] | None, anchors: Any, *, img_size: int, anchor_iou: float, min_face_size: float = 0.0,
    data_name: str = "<data>",
) -> AnchorReport | None:
    """``check_anchors`` at the start of a training run: ``records`` of the training set (None when
    the data set has none: skipped, returns None), the model's ``anchors`` (``Detector.anchors``, any
    array-like of w, h pairs), the training size, the assigner's ``anchor_iou``
    (``Detector.anchor_iou``), ``aug.min_face_size`` and the data set's name (for the advice)."""
    if records is None:
        log.info("anchor check skipped: the training set has no records")
        return None
    if isinstance(anchors, Tensor):
        anchors = anchors.detach().cpu()
    return check_anchors(records, np.asarray(anchors, np.float64), img_size=int(img_size),
                         anchor_iou=float(anchor_iou), min_face_size=float(min_face_size), data_name=str(data_name))
