"""Fit anchors to a data set and write them as a config (what ``tools/kmeans_anchors.py`` runs)."""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from facedet.anchors.kmeans import anchor_fitness, genetic_refine, kmeans_iou
from facedet.anchors.report import AnchorReport, anchor_report


def fit_anchors(
    wh: np.ndarray, *, k: int, anchor_iou: float, generations: int = 1000, seed: int = 0, max_faces: int = 100_000,
) -> tuple[np.ndarray, AnchorReport, AnchorReport]:
    """k-means (1 - IoU) then genetic refinement on ``wh`` ``(N, 2)`` (input pixels), scored at the
    assigner's ``anchor_iou``; anchors are rounded to whole pixels (>= 1). Returns (anchors
    ``(k, 2)`` sorted by area, report of the k-means anchors, report of the final anchors), both
    reports over all faces."""
    anchor_iou = float(anchor_iou)
    wh = np.asarray(wh, np.float64).reshape(-1, 2)
    sample = wh
    if len(wh) > max_faces:  # k-means and the search on a random subset; the reports use all faces
        sample = wh[np.random.default_rng(seed).choice(len(wh), max_faces, replace=False)]
    km = np.maximum(np.round(kmeans_iou(sample, k, seed=seed)), 1.0)
    refined, _ = genetic_refine(sample, km, fitness=lambda a: anchor_fitness(sample, a, anchor_iou),
                                generations=generations, seed=seed)
    final = np.maximum(np.round(refined), 1.0)
    final = final[np.argsort(final.prod(1), kind="stable")]
    if anchor_fitness(wh, final, anchor_iou) < anchor_fitness(wh, km, anchor_iou):  # rounding can undo a tiny gain
        final = km
    return final, anchor_report(wh, km, anchor_iou), anchor_report(wh, final, anchor_iou)


def per_level(anchors: np.ndarray, levels: int) -> list[list[int]]:
    """``(k, 2)`` anchors sorted by area -> ``levels`` flat ``[w1, h1, w2, h2, ...]`` lists (small
    anchors on the finest level: stride 8, or stride 4 in a P2 model)."""
    if len(anchors) % levels:
        raise ValueError(f"{len(anchors)} anchors do not split into {levels} levels")
    per = len(anchors) // levels
    return [[int(v) for v in anchors[i * per : (i + 1) * per].reshape(-1)] for i in range(levels)]


def anchors_yaml(levels: list[list[int]], report: AnchorReport, *, data: str, img_size: int, name: str,
                 strides: Sequence[int] = (8, 16, 32), model: str | None = None) -> str:
    """The text of ``configs/anchors/<name>.yaml`` (a Hydra option of the ``anchors`` group that
    sets ``model.anchors``); ``strides``: the model's, one per level, for the comment; ``model``: a
    ``model=`` option the usage line names (for models whose levels differ from the default's)."""
    if len(strides) != len(levels):
        raise ValueError(f"{len(levels)} anchor levels but {len(strides)} strides {list(strides)}")
    model_arg = f" model={model}" if model else ""
    lines = [
        "# @package model",
        f"# Anchors fitted to the {data} training faces at {img_size} px by tools/kmeans_anchors.py"
        f" ({datetime.date.today().isoformat()}):",
        f"# avg IoU {report.avg_iou:.3f}, best possible recall {report.bpr:.4f} at anchor_iou {report.anchor_iou:g},"
        f" {report.n} faces.",
        f"# Use: python tools/train.py data={data}{model_arg} anchors={name}",
        f"anchors:                    # per level (strides {', '.join(map(str, strides))}): w,h pairs in input pixels",
    ]
    lines += [f"  - [{', '.join(str(v) for v in lv)}]" for lv in levels]
    return "\n".join(lines) + "\n"


def write_anchors(text: str, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path
