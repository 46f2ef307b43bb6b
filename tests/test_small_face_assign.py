"""Issue 16, small faces in the loss: the ``scale_aware`` assigner (more positives below
``small_size``, the same above) and ``box_weight_by_size`` (YOLOv3's 2 - w*h on each box term)."""

from __future__ import annotations

import pytest
import torch

from facedet.assign import ScaleAwareAssigner, YOLOv4Assigner
from facedet.losses import YOLOLoss
from facedet.models.model_config import anchor_iou_of
from facedet.registry import ASSIGNERS, LOSSES, ConfigError, build

from .test_ohem import make_head  # the same fake head (anchors, strides 8/16/32, exp decoding)

# configs/anchors/facemask_320.yaml, the ablation's anchors, at 320 px
FACEMASK = torch.tensor(
    [[[5.0, 6.0], [8.0, 9.0], [11.0, 12.0]],
     [[14.0, 15.0], [18.0, 19.0], [22.0, 24.0]],
     [[28.0, 32.0], [44.0, 48.0], [80.0, 96.0]]]
)
STRIDES = [8, 16, 32]
GRIDS = [(40, 40), (20, 20), (10, 10)]


def face(cx: float, cy: float, size: float, b: int = 0, ignore: bool = False) -> list[float]:
    return [float(b), cx - size / 2, cy - size / 2, cx + size / 2, cy + size / 2, float(ignore)]


def matches(assigner: YOLOv4Assigner, rows: list[list[float]]) -> set[tuple[int, ...]]:
    """All matches as (level, b, a, gy, gx, t)."""
    out = assigner(torch.tensor(rows), FACEMASK, STRIDES, GRIDS)
    return {
        (lvl, *map(int, row))
        for lvl, m in enumerate(out)
        for row in zip(m.b.tolist(), m.a.tolist(), m.gy.tolist(), m.gx.tolist(), m.t.tolist(), strict=True)
    }


def test_yolov4_matches_fewer_anchors_for_the_smallest_faces() -> None:
    # The numbers the scale_aware module docstring quotes.
    yolo = YOLOv4Assigner()
    assert len(matches(yolo, [face(100, 100, 4)])) == 2
    assert len(matches(yolo, [face(100, 100, 10)])) == 5


def test_small_face_gets_more_positives_large_face_the_same() -> None:
    yolo, scale = YOLOv4Assigner(), ScaleAwareAssigner(small_size=16, small_anchor_iou=0.1)
    small = [face(100, 100, 10)]
    assert matches(yolo, small) < matches(scale, small)  # a strict superset: nothing is taken away
    # 10x10 against the anchors: 22x24 (IoU 0.19) and 28x32 (0.11) clear 0.1, not 0.213
    extra = {(lvl, a) for lvl, _, a, *_ in matches(scale, small) - matches(yolo, small)}
    assert extra == {(1, 2), (2, 0)}
    large = [face(100, 100, 40)]
    assert matches(yolo, large) == matches(scale, large)


def test_size_is_sqrt_area_and_the_bound_is_exclusive() -> None:
    yolo, scale = YOLOv4Assigner(), ScaleAwareAssigner(small_size=16, small_anchor_iou=0.0)
    at_bound = [[0.0, 90.0, 92.0, 98.0, 124.0, 0.0]]  # 8 x 32: sqrt(w*h) = 16, max side 32
    assert matches(yolo, at_bound) == matches(scale, at_bound)
    below = [[0.0, 90.0, 92.0, 98.0, 123.0, 0.0]]  # 8 x 31: sqrt(w*h) < 16
    assert matches(yolo, below) < matches(scale, below)


def test_small_topk_takes_the_k_best_anchors() -> None:
    # A 2 px face: its best anchor (5x6, IoU 0.13) is the only yolov4 match.
    rows = [face(100, 100, 2)]
    assert len(matches(YOLOv4Assigner(), rows)) == 1
    # small_anchor_iou 0.213 (no relaxation by IoU): only top-k adds anchors, the 3 smallest
    got = matches(ScaleAwareAssigner(small_anchor_iou=0.213, small_topk=3), rows)
    assert {(lvl, a) for lvl, _, a, *_ in got} == {(0, 0), (0, 1), (0, 2)}
    # k beyond the number of anchors takes them all
    assert len(matches(ScaleAwareAssigner(small_anchor_iou=0.213, small_topk=50), rows)) == 9


def test_mixed_batch_only_small_rows_change_and_ignored_rows_are_matched() -> None:
    rows = [face(100, 100, 10, b=0), face(60, 200, 40, b=1), face(200, 60, 10, b=1, ignore=True)]
    yolo, scale = matches(YOLOv4Assigner(), rows), matches(ScaleAwareAssigner(), rows)
    changed = {m[-1] for m in scale - yolo}
    assert changed == {0, 2}  # both small rows (the ignored one too: the loss masks its cells)
    assert {m for m in yolo if m[-1] == 1} == {m for m in scale if m[-1] == 1}


def test_empty_targets() -> None:
    out = ScaleAwareAssigner()(torch.zeros((0, 6)), FACEMASK, STRIDES, GRIDS)
    assert [m.num for m in out] == [0, 0, 0]


def test_built_from_config_keeps_parent_keys_and_names_bad_keys() -> None:
    a = build({"type": "scale_aware", "anchor_iou": 0.25, "near_cells": True, "small_size": 12}, ASSIGNERS)
    assert isinstance(a, ScaleAwareAssigner) and a.near_cells and a.small_size == 12.0
    assert anchor_iou_of({"loss": {"assigner": {"type": "scale_aware", "anchor_iou": 0.25}}}) == 0.25
    for key, value in (("small_anchor_iou", 0.3), ("small_size", -1), ("small_topk", 1.5), ("small_topk", -1)):
        with pytest.raises(ConfigError, match=key):
            build({"type": "scale_aware", key: value}, ASSIGNERS, where="model.loss.assigner")


# --- box_weight_by_size -------------------------------------------------------------------------

SIZE = 64  # input pixels: grids 8x8, 4x4, 2x2


def target(boxes: list[list[float]]) -> dict[str, torch.Tensor]:
    return {"boxes": torch.tensor(boxes).reshape(-1, 4), "labels": torch.zeros(len(boxes), dtype=torch.int64),
            "ignore": torch.zeros(len(boxes), dtype=torch.bool)}


def box_loss(by_size: bool, targets: list[dict[str, torch.Tensor]]) -> tuple[float, float]:
    """(loss_box, num_pos) for zero raw maps (every prediction its anchor at the cell centre)."""
    raws = [torch.zeros((len(targets), 3, SIZE // s, SIZE // s, 5)) for s in (8, 16, 32)]
    out = YOLOLoss(assigner=YOLOv4Assigner(), decoder=make_head(), box_weight_by_size=by_size)(raws, targets)
    return out["loss_box"].item(), out["num_pos"].item()


SMALL, LARGE = [10.0, 12.0, 18.0, 20.0], [8.0, 8.0, 40.0, 56.0]  # 8x8 and 32x48 in a 64x64 input


def test_box_weight_by_hand_one_face() -> None:
    off, n = box_loss(False, [target([SMALL])])
    on, n_on = box_loss(True, [target([SMALL])])
    assert n == n_on and off > 0
    assert on == pytest.approx(off * (2 - (8 / 64) * (8 / 64)), rel=1e-6)  # 1.984375: mean over a count


def test_box_weight_by_hand_two_sizes_averaged_over_the_count() -> None:
    # Per-face sums (loss * positives) from each face alone; the faces are in different images.
    s_off, s_n = box_loss(False, [target([SMALL]), target([])])
    l_off, l_n = box_loss(False, [target([]), target([LARGE])])
    on, n = box_loss(True, [target([SMALL]), target([LARGE])])
    w_small, w_large = 2 - (8 / 64) ** 2, 2 - (32 / 64) * (48 / 64)  # 1.984375, 1.625
    assert n == s_n + l_n
    assert on == pytest.approx((w_small * s_off * s_n + w_large * l_off * l_n) / n, rel=1e-6)
    # and the small face now weighs more, relative to the large one, than without the option
    assert w_small / w_large > 1.2


def test_box_weight_by_size_from_config_and_bad_value() -> None:
    node = {"type": "yolo_loss", "assigner": {"type": "yolov4"}, "box_weight_by_size": True}
    assert build(node, LOSSES, decoder=make_head()).box_weight_by_size is True
    with pytest.raises(ConfigError, match="box_weight_by_size"):
        build({**node, "box_weight_by_size": "yes"}, LOSSES, where="model.loss", decoder=make_head())
