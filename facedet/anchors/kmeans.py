"""Anchor fitting: k-means on face (width, height) with distance 1 - IoU, then a genetic refinement.

Why our own k-means: scipy's and scikit-learn's k-means minimise Euclidean distance, under which
large faces dominate and small ones get poor anchors; YOLOv2 introduced 1 - IoU of boxes aligned at
a common centre as the distance, and that is what the assigner uses to match faces to anchors
(``shape_iou`` is the assigner's own ``facedet.assign.wh_iou``, on numpy arrays).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from facedet.assign import wh_iou


def shape_iou(wh: np.ndarray, anchors: np.ndarray) -> np.ndarray:
    """Shape IoU of ``(N, 2)`` boxes and ``(K, 2)`` anchors aligned at a common centre -> ``(N, K)``
    float64: the assigner's ``wh_iou``, so fitting and assignment measure one IoU."""
    wh_t = torch.from_numpy(np.asarray(wh, np.float64).reshape(-1, 2))
    return wh_iou(wh_t, torch.from_numpy(np.asarray(anchors, np.float64).reshape(-1, 2))).numpy()


def sort_by_area(anchors: np.ndarray) -> np.ndarray:
    return anchors[np.argsort(anchors[:, 0] * anchors[:, 1], kind="stable")]


def kmeans_iou(wh: np.ndarray, k: int, *, iters: int = 300, restarts: int = 5, seed: int = 0) -> np.ndarray:
    """``k`` anchors ``(k, 2)`` (sorted by area) minimising the mean 1 - IoU of each box to its
    nearest anchor. Lloyd iterations with the median as the cluster centre (robust to outliers);
    initialised k-means++-style in the 1 - IoU distance; the best of ``restarts`` runs is kept."""
    wh = np.asarray(wh, np.float64).reshape(-1, 2)
    if len(wh) < k:
        raise ValueError(f"k-means needs at least k={k} boxes, got {len(wh)}")
    rng = np.random.default_rng(seed)
    best, best_score = None, -1.0
    for _ in range(max(1, restarts)):
        centres = wh[rng.integers(len(wh))][None]
        while len(centres) < k:  # k-means++: far boxes (in 1 - IoU) are likelier next centres
            d = 1.0 - shape_iou(wh, centres).max(1)
            p = d**2 / max((d**2).sum(), 1e-12) if d.sum() > 0 else None
            centres = np.vstack([centres, wh[rng.choice(len(wh), p=p)]])
        assign = None
        for _ in range(iters):
            iou = shape_iou(wh, centres)
            new = iou.argmax(1)
            if assign is not None and np.array_equal(new, assign):
                break
            assign = new
            for j in range(k):
                members = wh[assign == j]
                if len(members):
                    centres[j] = np.median(members, 0)
                else:  # an empty cluster restarts at the worst-served box
                    centres[j] = wh[iou.max(1).argmin()]
        score = float(shape_iou(wh, centres).max(1).mean())
        if score > best_score:
            best, best_score = centres.copy(), score
    return sort_by_area(best)


def anchor_fitness(wh: np.ndarray, anchors: np.ndarray, anchor_iou: float) -> float:
    """Mean best-anchor IoU, counting only faces whose best IoU clears ``anchor_iou`` (the assigner's
    threshold): rewards average fit and best possible recall together (as YOLOv5's fitness does
    with its ratio metric)."""
    best = shape_iou(wh, anchors).max(1)
    return float((best * (best > anchor_iou)).mean())


def genetic_refine(
    wh: np.ndarray,
    anchors: np.ndarray,
    *,
    fitness: Callable[[np.ndarray], float],
    generations: int = 1000,
    mutation_prob: float = 0.9,
    sigma: float = 0.1,
    seed: int = 0,
) -> tuple[np.ndarray, float]:
    """YOLOv5's anchor evolution: mutate all anchors by random factors (each with probability
    ``mutation_prob``, log-normal-ish of width ``sigma``, clipped to [0.3, 3]) and keep a mutation
    when it raises ``fitness``. Returns (anchors sorted by area, their fitness)."""
    rng = np.random.default_rng(seed)
    best = np.asarray(anchors, np.float64).copy()
    best_f = fitness(best)
    for _ in range(max(0, generations)):
        v = np.ones_like(best)
        while (v == 1).all():  # mutate until something changes
            v = ((rng.random(best.shape) < mutation_prob) * rng.random() * rng.standard_normal(best.shape)
                 * sigma + 1).clip(0.3, 3.0)
        cand = (best * v).clip(min=1.0)
        f = fitness(cand)
        if f > best_f:
            best, best_f = cand, f
    return sort_by_area(best), best_f
