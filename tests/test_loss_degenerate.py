"""IoU-family losses and the YOLO loss on degenerate boxes: values by hand, no NaN or inf in the
loss or its gradients, and ordinary boxes unchanged by the guards (``bench/reliability_loss.py``
runs the same grids larger)."""

from __future__ import annotations

import itertools

import pytest
import torch
from torchvision.ops import complete_box_iou_loss, distance_box_iou_loss, generalized_box_iou_loss

from bench.reliability_loss import CASES, DTYPES, FILLS, KINDS, TARGETS, measure, yolo_loss_case
from facedet.losses import box_similarity, ciou, ciou_loss


@pytest.mark.parametrize(
    ("pred", "target", "expected"),
    [
        # w, h = 2, 4 against 4, 2. Overlap [0, 2] x [0, 2] = 4, union 8 + 8 - 4 = 12: IoU = 1/3.
        # Centres (1, 2) and (2, 1): rho^2 = 2; enclosing box 4 x 4: c^2 = 32; rho^2/c^2 = 0.0625.
        # v = 4/pi^2 (atan 2 - atan 0.5)^2 = 0.4052847 * 0.6435011^2 = 0.1678257;
        # alpha = v / (2/3 + v) = 0.2011112; alpha v = 0.0337516.
        # loss = 1 - 1/3 + 0.0625 + 0.0337516 = 0.7629183
        ([0.0, 0.0, 2.0, 4.0], [0.0, 0.0, 4.0, 2.0], 0.7629183),
        # identical: IoU 1, rho 0, v 0 (alpha's 0/0 taken as 0): loss 0
        ([10.0, 20.0, 30.0, 60.0], [10.0, 20.0, 30.0, 60.0], 0.0),
        # disjoint unit squares: IoU 0; centres (0.5, 0.5), (3.5, 0.5): rho^2 = 9; enclosing 4 x 1:
        # c^2 = 17; v = 0 (same aspect). loss = 1 + 9/17 = 1.5294118
        ([0.0, 0.0, 1.0, 1.0], [3.0, 0.0, 4.0, 1.0], 1.5294118),
    ],
)
def test_ciou_loss_by_hand(pred: list[float], target: list[float], expected: float) -> None:
    got = ciou_loss(torch.tensor([pred]), torch.tensor([target]))
    assert got.item() == pytest.approx(expected, abs=1e-6)


def test_diou_giou_by_hand() -> None:
    pred, target = torch.tensor([[0.0, 0.0, 2.0, 4.0]]), torch.tensor([[0.0, 0.0, 4.0, 2.0]])
    # DIoU = IoU - rho^2/c^2 = 1/3 - 1/16; GIoU = IoU - (C - U)/C = 1/3 - (16 - 12)/16
    assert box_similarity(pred, target, "diou").item() == pytest.approx(1 / 3 - 1 / 16, abs=1e-6)
    assert box_similarity(pred, target, "giou").item() == pytest.approx(1 / 3 - 1 / 4, abs=1e-6)
    with pytest.raises(ValueError, match="kind must be one of"):
        box_similarity(pred, target, "iou")


@pytest.mark.parametrize("dtype", sorted(DTYPES))
@pytest.mark.parametrize("case", sorted(CASES))
def test_degenerate_pairs_have_finite_loss_and_grad(case: str, dtype: str) -> None:
    pred, target = CASES[case](torch.Generator().manual_seed(7), 300)
    for kind in KINDS:
        max_loss, max_grad, finite = measure(kind, pred, target, DTYPES[dtype])
        assert finite, f"{case} {dtype} {kind}: non-finite loss or gradient"
        assert max_loss <= 3.0, f"{case} {dtype} {kind}: 1 - CIoU/DIoU/GIoU cannot exceed 3, got {max_loss}"


def _loss_and_grad(pred: list[float], target: list[float]) -> tuple[float, torch.Tensor]:
    p = torch.tensor([pred], requires_grad=True)
    loss = ciou_loss(p, torch.tensor([target]))
    loss.sum().backward()
    return loss.item(), p.grad


def test_zero_size_prediction_far_from_the_origin_regression() -> None:
    # was NaN: the old floor x1 + 1e-4 rounds back to x1 beyond 2048 px in float32 (then w/h = 0/0)
    loss, grad = _loss_and_grad([5000.0, 5000.0, 5000.0, 5000.0], [4990.0, 4990.0, 5010.0, 5010.0])
    assert loss == pytest.approx(1.0, abs=1e-5) and torch.isfinite(grad).all()
    loss, grad = _loss_and_grad([3000.0, 3000.0, 3010.0, 3000.0], [2990.0, 2990.0, 3010.0, 3010.0])
    assert 1.0 < loss < 1.2 and torch.isfinite(grad).all()  # zero height: finite loss had NaN grads


def test_huge_and_tiny_identical_boxes_regression() -> None:
    # 1e20: areas overflowed to inf and inf/inf gave NaN; 1e-4 px: torchvision's eps (1e-7 px^2)
    # outweighed the 1e-8 px^2 area, so identical boxes had CIoU 0.09 instead of 1
    for side in (1e20, 1e-4):
        loss, grad = _loss_and_grad([0.0, 0.0, side, side], [0.0, 0.0, side, side])
        assert loss == pytest.approx(0.0, abs=1e-6) and torch.isfinite(grad).all()


def test_negative_width_prediction_still_learns_to_move() -> None:
    loss, grad = _loss_and_grad([50.0, 10.0, 20.0, 40.0], [0.0, 10.0, 30.0, 40.0])  # x2 < x1
    assert loss > 1.0 and torch.isfinite(grad).all() and grad[0, 0] > 0  # x1 is pushed left


def test_ordinary_boxes_are_unchanged_by_the_guards() -> None:
    g = torch.Generator().manual_seed(0)
    xy = torch.rand(20000, 2, generator=g) * 600
    a = torch.cat((xy, xy + 1 + torch.rand(20000, 2, generator=g) * 200), 1)
    xy = xy + torch.randn(20000, 2, generator=g) * 20
    b = torch.cat((xy, xy + 1 + torch.rand(20000, 2, generator=g) * 200), 1)
    for kind, tv in (("ciou", complete_box_iou_loss), ("diou", distance_box_iou_loss),
                     ("giou", generalized_box_iou_loss)):
        ref = tv(a.double(), b.double())  # torchvision on the raw boxes, float64
        assert (1 - box_similarity(a, b, kind) - ref).abs().max() < 1e-6, kind
        p, q = a.clone().requires_grad_(True), a.clone().requires_grad_(True)
        (1 - box_similarity(p, b, kind)).sum().backward()
        tv(q, b).sum().backward()
        assert (p.grad - q.grad).abs().max() < 1e-6, kind
    assert ciou(a[:3], b[:3]).shape == (3,)


@pytest.mark.parametrize("wh_mode", ["exp", "sigmoid"])
def test_yolo_loss_degenerate_targets_and_extreme_logits(wh_mode: str) -> None:
    for (name, targets), fill in itertools.product(TARGETS.items(), FILLS):
        loss, grad, finite = yolo_loss_case(targets, fill, wh_mode=wh_mode, near_cells=fill == "0", size=128)
        assert finite, f"{name} {fill} {wh_mode}: loss {loss}, max grad {grad}"
    # huge targets: the 1e20 box overflowed CIoU's areas to NaN
    assert yolo_loss_case(TARGETS["huge"], "0", wh_mode=wh_mode, near_cells=False, size=128)[2]


def test_yolo_loss_zero_size_predictions_on_a_large_image_regression() -> None:
    # -1e4 logits decode to zero-size boxes; at 2300 px their corners were x1 + 1e-4 == x1: NaN
    loss, grad, finite = yolo_loss_case(TARGETS["normal"], "-1e4", wh_mode="exp", near_cells=False, size=2560)
    assert finite and loss > 0
