"""Soft-NMS: the score decay of both methods, dropping, ordering, limits, and building from a config."""

from __future__ import annotations

import math

import pytest
import torch
from torchvision.ops import box_iou

from facedet.postprocess import NMS, SoftNMS
from facedet.registry import POSTPROCESSORS, ConfigError, build

A = [0.0, 0.0, 10.0, 10.0]
B = [2.0, 0.0, 12.0, 10.0]  # IoU with A = 80 / 120
FAR = [50.0, 50.0, 60.0, 60.0]


def run(post, boxes, scores):
    return post(torch.tensor([boxes]), torch.tensor([scores]))[0]


def test_gaussian_decay_lowers_an_overlapping_box_instead_of_removing_it():
    out = run(SoftNMS(method="gaussian", sigma=0.5, score_thresh=0.01), [A, B, FAR], [0.9, 0.8, 0.7])
    iou = 80 / 120
    assert out["scores"].tolist() == pytest.approx([0.9, 0.7, 0.8 * math.exp(-iou**2 / 0.5)])
    assert out["boxes"].tolist() == [A, FAR, B]  # re-sorted by the decayed scores
    assert run(NMS(nms_iou=0.5), [A, B, FAR], [0.9, 0.8, 0.7])["boxes"].tolist() == [A, FAR]  # NMS removes B


def test_linear_decay_only_above_the_threshold():
    iou = 80 / 120
    out = run(SoftNMS(method="linear", nms_iou=0.5, score_thresh=0.01), [A, B, FAR], [0.9, 0.8, 0.7])
    assert sorted(out["scores"].tolist()) == pytest.approx(sorted([0.9, 0.7, 0.8 * (1 - iou)]))
    out = run(SoftNMS(method="linear", nms_iou=0.7, score_thresh=0.01), [A, B], [0.9, 0.8])
    assert out["scores"].tolist() == pytest.approx([0.9, 0.8])


def test_boxes_decayed_below_the_score_threshold_are_dropped():
    out = run(SoftNMS(method="linear", nms_iou=0.5, score_thresh=0.3), [A, B, FAR], [0.9, 0.8, 0.7])
    assert out["boxes"].tolist() == [A, FAR]  # 0.8 * (1 - 2/3) < 0.3


def test_output_is_sorted_and_limited_and_matches_nms_without_overlaps():
    g = torch.Generator().manual_seed(0)
    xy = torch.rand(200, 2, generator=g) * 300
    boxes = torch.cat([xy, xy + torch.rand(200, 2, generator=g) * 40 + 5], 1)
    scores = torch.rand(200, generator=g)
    out = SoftNMS(max_det=50, score_thresh=0.05)(boxes[None], scores[None])[0]
    assert len(out["scores"]) == 50 and torch.all(out["scores"][:-1] >= out["scores"][1:])
    # boxes that overlap nothing keep their scores: then soft-NMS is a sort
    apart = torch.tensor([[i * 20.0, 0.0, i * 20.0 + 10, 10.0] for i in range(10)])
    s = torch.rand(10, generator=g) + 0.1
    out = SoftNMS()(apart[None], s[None])[0]
    assert torch.equal(out["scores"], s.sort(descending=True).values)
    assert box_iou(out["boxes"], apart).max(1).values.min() == 1


def test_built_from_a_config_node_with_checked_arguments():
    post = build({"type": "soft_nms", "sigma": 0.3, "score_thresh": 0.2}, POSTPROCESSORS)
    assert isinstance(post, SoftNMS) and post.sigma == 0.3 and post.score_thresh == 0.2
    with pytest.raises(ConfigError, match="method must be one of"):
        build({"type": "soft_nms", "method": "gauss"}, POSTPROCESSORS)
    with pytest.raises(ConfigError, match="Did you mean 'sigma'"):
        build({"type": "soft_nms", "sigmaa": 0.3}, POSTPROCESSORS)
    empty = run(SoftNMS(), [A], [0.0005])
    assert empty["boxes"].shape == (0, 4) and empty["scores"].shape == (0,)
