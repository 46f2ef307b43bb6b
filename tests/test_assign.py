"""YOLOv4 assignment: best anchor, IoU-threshold multi-anchor, cells, clamping, near cells."""

from __future__ import annotations

import math

import pytest
import torch

from facedet.assign import YOLOv4Assigner, wh_iou
from facedet.registry import ASSIGNERS, build

ANCHORS = torch.tensor(
    [
        [[10.0, 10.0], [20.0, 20.0], [30.0, 30.0]],
        [[40.0, 40.0], [60.0, 60.0], [80.0, 80.0]],
        [[100.0, 100.0], [150.0, 150.0], [200.0, 200.0]],
    ]
)
STRIDES = [8, 16, 32]
GRIDS = [(32, 32), (16, 16), (8, 8)]  # a 256x256 input


def face(cx: float, cy: float, w: float, h: float, b: int = 0, ignore: bool = False) -> list[float]:
    return [float(b), cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2, float(ignore)]


def matches(out) -> set[tuple[int, ...]]:
    """All matches as (level, b, a, gy, gx, t)."""
    return {
        (lvl, *map(int, row))
        for lvl, m in enumerate(out)
        for row in zip(m.b.tolist(), m.a.tolist(), m.gy.tolist(), m.gx.tolist(), m.t.tolist(), strict=True)
    }


def reference(targets: torch.Tensor, anchor_iou: float) -> set[tuple[int, ...]]:
    """Slow per-target, per-anchor YOLOv4 rule written out directly."""
    out = set()
    for t, (b, x1, y1, x2, y2, _) in enumerate(targets.tolist()):
        w, h = x2 - x1, y2 - y1
        ious = []
        for lvl in range(3):
            for a in range(3):
                aw, ah = ANCHORS[lvl, a].tolist()
                inter = min(w, aw) * min(h, ah)
                ious.append((inter / (w * h + aw * ah - inter), lvl, a))
        best = max(ious)[1:]
        for iou, lvl, a in ious:
            if iou > anchor_iou or (lvl, a) == best:
                s = STRIDES[lvl]
                gx = min(max(math.floor((x1 + x2) / 2 / s), 0), GRIDS[lvl][1] - 1)
                gy = min(max(math.floor((y1 + y2) / 2 / s), 0), GRIDS[lvl][0] - 1)
                out.add((lvl, int(b), a, gy, gx, t))
    return out


def test_wh_iou_values() -> None:
    iou = wh_iou(torch.tensor([[25.0, 25.0]]), torch.tensor([[20.0, 20.0], [10.0, 40.0]]))
    assert iou[0, 0].item() == pytest.approx(400 / 625)
    assert iou[0, 1].item() == pytest.approx(250 / (625 + 400 - 250))


def test_best_anchor_assigned_even_below_threshold() -> None:
    tgt = torch.tensor([face(100.0, 60.0, 22.0, 22.0)])
    assigner = YOLOv4Assigner(anchor_iou=0.99)
    assert (wh_iou(tgt[:, 3:5] - tgt[:, 1:3], ANCHORS.view(-1, 2)) < 0.99).all()
    out = assigner(tgt, ANCHORS, STRIDES, GRIDS)
    assert matches(out) == {(0, 0, 1, 7, 12, 0)}  # level 0, anchor 20x20, cell (y 7, x 12)


def test_multiple_anchors_across_levels() -> None:
    # A 25x25 face: IoU 0.64 with 20x20, 0.69 with 30x30, 0.39 with 40x40, below 0.3 elsewhere.
    tgt = torch.tensor([face(100.5, 60.3, 25.0, 25.0, b=1)])
    out = YOLOv4Assigner(anchor_iou=0.3)(tgt, ANCHORS, STRIDES, GRIDS)
    assert matches(out) == {(0, 1, 1, 7, 12, 0), (0, 1, 2, 7, 12, 0), (1, 1, 0, 3, 6, 0)}
    assert [m.num for m in out] == [2, 1, 0]


def test_cell_indices_clamped_into_grid() -> None:
    tgt = torch.tensor([face(256.0, 0.0, 30.0, 30.0), face(-3.0, 300.0, 30.0, 30.0)])
    out = YOLOv4Assigner(anchor_iou=0.99)(tgt, ANCHORS, STRIDES, GRIDS)
    assert matches(out) == {(0, 0, 2, 0, 31, 0), (0, 0, 2, 31, 0, 1)}


def test_matches_slow_reference_on_random_targets() -> None:
    g = torch.Generator().manual_seed(0)
    n = 200
    cxy = torch.rand(n, 2, generator=g) * 256
    wh = torch.exp(torch.rand(n, 2, generator=g) * math.log(200.0)) + 1.0
    b = torch.randint(0, 4, (n, 1), generator=g).float()
    tgt = torch.cat((b, cxy - wh / 2, cxy + wh / 2, torch.zeros(n, 1)), 1)
    for anchor_iou in (0.213, 0.5):
        got = matches(YOLOv4Assigner(anchor_iou=anchor_iou)(tgt, ANCHORS, STRIDES, GRIDS))
        assert got == reference(tgt, anchor_iou)


def test_ignored_rows_are_matched_too() -> None:
    # The loss masks these cells out of the objectness loss, so the assigner must report them.
    tgt = torch.tensor([face(100.0, 60.0, 22.0, 22.0, ignore=True)])
    assert len(matches(YOLOv4Assigner(anchor_iou=0.99)(tgt, ANCHORS, STRIDES, GRIDS))) == 1


def test_empty_targets() -> None:
    out = YOLOv4Assigner()(torch.zeros((0, 6)), ANCHORS, STRIDES, GRIDS)
    assert len(out) == 3
    assert all(m.num == 0 and m.b.dtype == torch.int64 for m in out)


def test_near_cells_adds_two_neighbours_away_from_border() -> None:
    # Centre at cell-space (12.75, 7.25) on level 0: right neighbour in x, upper neighbour in y.
    tgt = torch.tensor([face(102.0, 58.0, 25.0, 25.0), face(150.0, 195.0, 70.0, 50.0, b=1)])
    plain = matches(YOLOv4Assigner(anchor_iou=0.3)(tgt, ANCHORS, STRIDES, GRIDS))
    near = matches(YOLOv4Assigner(anchor_iou=0.3, near_cells=True)(tgt, ANCHORS, STRIDES, GRIDS))
    assert plain <= near
    assert len(near) == 3 * len(plain)
    assert (0, 0, 1, 7, 13, 0) in near and (0, 0, 1, 6, 12, 0) in near
    for lvl, b, a, gy, gx, t in plain:  # each match got exactly one x- and one y-neighbour
        extra = {m for m in near - plain if m[:3] == (lvl, b, a) and m[5] == t}
        offsets = {(m[3] - gy, m[4] - gx) for m in extra}
        assert len(offsets) == 2
        assert any(dy == 0 and abs(dx) == 1 for dy, dx in offsets)
        assert any(dx == 0 and abs(dy) == 1 for dy, dx in offsets)


def test_near_cells_skips_neighbours_outside_grid() -> None:
    tgt = torch.tensor([face(2.0, 98.0, 22.0, 22.0)])  # cell space (0.25, 12.25): left of column 0
    out = matches(YOLOv4Assigner(anchor_iou=0.99, near_cells=True)(tgt, ANCHORS, STRIDES, GRIDS))
    assert out == {(0, 0, 1, 12, 0, 0), (0, 0, 1, 11, 0, 0)}  # only the y-neighbour


def test_built_from_config_and_validates() -> None:
    a = build({"type": "yolov4", "anchor_iou": 0.3, "near_cells": True}, ASSIGNERS)
    assert isinstance(a, YOLOv4Assigner) and a.anchor_iou == 0.3 and a.near_cells
    with pytest.raises(ValueError):
        YOLOv4Assigner(anchor_iou=1.5)
