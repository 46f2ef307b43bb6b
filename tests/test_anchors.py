"""Anchors: IoU distance, k-means, genetic refinement, reports, the training-start check, and the
written config used by a training command."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from torchvision.ops import box_iou

from facedet.anchors import (
    anchor_fitness,
    anchor_report,
    anchors_yaml,
    check_anchors,
    fit_anchors,
    genetic_refine,
    kmeans_iou,
    letterboxed_wh,
    per_level,
    shape_iou,
)
from facedet.assign import wh_iou
from facedet.data.records import Record

from .conftest import CONFIG_DIR

CENTRES = np.array([[8.0, 10.0], [30.0, 36.0], [110.0, 90.0]])


def _clusters(n: int = 300, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.concatenate([c * rng.lognormal(0, 0.08, (n, 2)) for c in CENTRES])


def test_shape_iou_is_the_iou_of_centred_boxes_and_the_assigners():
    rng = np.random.default_rng(0)
    a, b = rng.uniform(1, 50, (7, 2)), rng.uniform(1, 50, (4, 2))
    centred = lambda wh: torch.tensor(np.concatenate([-wh / 2, wh / 2], 1))  # noqa: E731
    np.testing.assert_allclose(shape_iou(a, b), box_iou(centred(a), centred(b)).numpy(), rtol=1e-6)
    # one implementation: the fit measures exactly what the assigner thresholds
    assert np.array_equal(shape_iou(a, b), wh_iou(torch.from_numpy(a), torch.from_numpy(b)).numpy())


def test_kmeans_finds_the_clusters():
    anchors = kmeans_iou(_clusters(), 3, seed=1)
    np.testing.assert_allclose(anchors, CENTRES, rtol=0.1)
    assert (np.diff(anchors.prod(1)) > 0).all()  # sorted by area


def test_genetic_refinement_only_improves():
    wh = _clusters()
    start = CENTRES * [[1.6, 0.7], [0.6, 1.5], [1.4, 1.3]]
    fit = lambda a: anchor_fitness(wh, a, 0.5)  # noqa: E731
    refined, f = genetic_refine(wh, start, fitness=fit, generations=300, seed=0)
    assert f == pytest.approx(fit(refined)) and f > fit(start) + 0.05


def test_report_avg_iou_bpr_and_buckets():
    wh = np.array([[10.0, 10.0], [100.0, 100.0], [5.0, 5.0], [40.0, 40.0]])
    rep = anchor_report(wh, np.array([[10.0, 10.0], [40.0, 40.0]]), 0.2)
    best = np.array([1.0, 0.16, 0.25, 1.0])
    assert rep.n == 4 and rep.avg_iou == pytest.approx(best.mean()) and rep.bpr == pytest.approx(0.75)
    buckets = {(lo, hi): (n, bpr) for lo, hi, n, bpr, _ in rep.buckets}
    assert buckets[(64.0, 128.0)] == (1, 0.0) and buckets[(0.0, 8.0)] == (1, 1.0)
    assert "64-128" in rep.table() and "best possible recall 0.7500" in rep.summary()


def _records(wh: np.ndarray, size=(200, 400)) -> list[Record]:
    boxes = np.concatenate([np.zeros_like(wh), wh], 1).astype(np.float32)
    ign = np.zeros(len(wh), bool)
    ign[0] = True  # ignored faces are not fitted
    return [Record(Path("x.jpg"), "x.jpg", boxes, ign, np.full((len(wh), 5, 2), np.nan, np.float32), size)]


def test_letterboxed_sizes_and_the_training_start_check(caplog):
    wh = _clusters(50)
    got, small = letterboxed_wh(_records(wh), 200, min_face_size=5)
    scaled = wh[1:] * 0.5  # letterboxing 400 px -> 200 px
    assert small == int((scaled.min(1) < 5).sum()) and len(got) == len(scaled) - small
    with caplog.at_level("INFO"):
        rep = check_anchors(_records(wh), [[4, 5, 15, 18, 55, 45]], img_size=200, anchor_iou=0.213)
    assert rep.bpr > 0.98 and not [r for r in caplog.records if r.levelname == "WARNING"]
    caplog.clear()
    with caplog.at_level("INFO"):  # anchors fitted to other data: say so, why it matters and what to do
        rep = check_anchors(_records(wh), [[400, 300, 500, 400, 600, 500]], img_size=200, anchor_iou=0.213,
                            data_name="mydata")
    (w,) = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert rep.bpr < 0.98 and "best possible recall" in w and "tools/kmeans_anchors.py data=mydata" in w
    assert "anchors=<name>" in w and "face size (px)" in w


def test_fit_writes_a_config_that_composes(tmp_path):
    anchors, km_rep, rep = fit_anchors(_clusters(), k=9, anchor_iou=0.213, generations=200)
    assert anchors.shape == (9, 2) and (anchors == np.round(anchors)).all()
    assert rep.avg_iou >= km_rep.avg_iou - 1e-9 and rep.bpr > 0.99
    levels = per_level(anchors, 3)
    text = anchors_yaml(levels, rep, data="mydata", img_size=320, name="mine")
    assert text.startswith("# @package model\n") and "anchors=mine" in text
    assert OmegaConf.create(text).anchors == levels


def test_committed_facemask_anchors_reach_the_model(compose_cfg):
    from facedet.models import build_detector

    written = OmegaConf.load(CONFIG_DIR / "anchors" / "facemask.yaml").anchors
    cfg = compose_cfg(["data=facemask", "anchors=facemask"])
    assert cfg.model.anchors == written and cfg.model.name == "yolov4_nano"
    head = build_detector(cfg.model).head
    assert head.anchors.shape == (3, 3, 2) and head.anchors.flatten().tolist() == [float(v) for lv in written
                                                                                   for v in lv]
    flat = str(OmegaConf.to_container(written)).replace(" ", "")  # the printed command-line form works too
    assert compose_cfg([f"model.anchors={flat}"]).model.anchors == written


def test_kmeans_tool_on_a_data_config(compose_cfg, tmp_path, capsys):
    from facedet.cli import kmeans_anchors as mod
    from facedet.data import generate_synthetic

    generate_synthetic(tmp_path / "syn", num_train=24, num_val=2, seed=0)
    cfg = compose_cfg([f"data.root={tmp_path / 'syn'}", "data.num_train=24", "data.num_val=2",
                       "kmeans.generations=50", "kmeans.write=false"], name="kmeans_anchors")
    assert mod.run(cfg) is None
    out = capsys.readouterr().out
    assert "avg IoU" in out and "best possible recall" in out and "face size (px)" in out
    assert "anchors=synthetic" in out and "'model.anchors=[[" in out
