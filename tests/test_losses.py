"""CIoU values by hand, and the YOLO loss: empty batches, ignored faces, ignore_iou, near_cells and
balance checks at build time, training signal."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from torchvision.ops import box_iou

from facedet.assign import YOLOv4Assigner
from facedet.losses import YOLOLoss, ciou, ciou_loss, max_iou_per_image, pad_per_image, targets
from facedet.models.heads import yolo_decode
from facedet.registry import LOSSES, build

SIZE = 64  # input pixels: grids 8x8, 4x4, 2x2


def make_head(scale_x_y: float = 1.0, wh_mode: str = "exp") -> SimpleNamespace:
    """Stand-in for the head's decoding (``YOLOHead.decoding()``): what the loss is built with."""
    head = SimpleNamespace(
        anchors=torch.tensor(
            [
                [[4.0, 5.0], [8.0, 10.0], [12.0, 14.0]],
                [[16.0, 20.0], [24.0, 28.0], [32.0, 36.0]],
                [[40.0, 48.0], [52.0, 56.0], [64.0, 64.0]],
            ]
        ),
        strides=[8, 16, 32],
        scale_x_y=[scale_x_y] * 3,
        wh_mode=wh_mode,
    )
    head.decode_level = lambda raw, i: yolo_decode.decode_level(
        raw, head.anchors[i], head.strides[i], head.scale_x_y[i], head.wh_mode
    )
    return head


def make_raws(batch: int = 1, fill: float = 0.0) -> list[torch.Tensor]:
    return [torch.full((batch, 3, SIZE // s, SIZE // s, 5), fill, requires_grad=True) for s in (8, 16, 32)]


def target(boxes: list[list[float]], ignore: list[bool] | None = None) -> dict[str, torch.Tensor]:
    n = len(boxes)
    return {
        "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(n, 4),
        "labels": torch.zeros(n, dtype=torch.int64),
        "ignore": torch.tensor(ignore if ignore is not None else [False] * n, dtype=torch.bool),
        "landmarks": torch.full((n, 5, 2), float("nan")),
    }


def obj_grads(raws: list[torch.Tensor]) -> list[torch.Tensor]:
    return [r.grad[..., 4] for r in raws]


def test_ciou_same_aspect_by_hand() -> None:
    # IoU = 1/7; centres (1, 1) and (2, 2): rho^2 = 2; enclosing box 3x3: c^2 = 18; v = 0.
    got = ciou(torch.tensor([[0.0, 0.0, 2.0, 2.0]]), torch.tensor([[1.0, 1.0, 3.0, 3.0]]))
    assert got.item() == pytest.approx(1 / 7 - 2 / 18, abs=1e-6)


def test_ciou_different_aspect_by_hand() -> None:
    pred, tgt = torch.tensor([[0.0, 0.0, 4.0, 2.0]]), torch.tensor([[1.0, 0.0, 3.0, 3.0]])
    iou = 4 / (8 + 6 - 4)  # overlap [1, 3] x [0, 2]
    rho2_c2 = 0.25 / (4**2 + 3**2)  # centres (2, 1) and (2, 1.5); enclosing box 4x3
    v = 4 / math.pi**2 * (math.atan(2 / 3) - math.atan(4 / 2)) ** 2
    alpha = v / (1 - iou + v)
    expected = iou - rho2_c2 - alpha * v
    assert ciou(pred, tgt).item() == pytest.approx(expected, abs=1e-6)
    assert ciou_loss(pred, tgt, reduction="mean").item() == pytest.approx(1 - expected, abs=1e-6)


def test_ciou_degenerate_box_is_finite() -> None:
    pred = torch.tensor([[5.0, 5.0, 5.0, 5.0]], requires_grad=True)  # zero size: 0/0 in torchvision
    out = ciou(pred, torch.tensor([[4.0, 4.0, 8.0, 9.0]]))
    out.sum().backward()
    assert torch.isfinite(out).all() and torch.isfinite(pred.grad).all()


def test_built_from_config() -> None:
    loss = build(
        {"type": "yolo_loss", "assigner": {"type": "yolov4", "anchor_iou": 0.3}, "box_weight": 0.1}, LOSSES,
        decoder=make_head(),
    )
    assert isinstance(loss, YOLOLoss) and isinstance(loss.assigner, YOLOv4Assigner)
    assert loss.assigner.anchor_iou == 0.3 and loss.box_weight == 0.1


def test_empty_batch_is_finite_with_gradients() -> None:
    head, raws = make_head(), make_raws(batch=2)
    out = YOLOLoss(assigner=YOLOv4Assigner(), decoder=head)(raws, [target([]), target([])])
    assert set(out) == {"loss", "loss_box", "loss_obj", "num_pos"}
    assert out["num_pos"].item() == 0 and out["loss_box"].item() == 0
    assert torch.isfinite(out["loss"]) and out["loss"].item() > 0
    out["loss"].backward()
    for r in raws:
        assert torch.isfinite(r.grad).all()
        assert (r.grad[..., 4] > 0).all()  # every cell is a negative: pushed towards background


def test_ignored_face_is_neither_positive_nor_negative() -> None:
    head = make_head()
    box = [20.0, 18.0, 30.0, 31.0]
    loss_fn = YOLOLoss(assigner=YOLOv4Assigner(), decoder=head, ignore_iou=1.0)  # isolate the assignment mask
    raws_e, raws_i = make_raws(), make_raws()
    out_e = loss_fn(raws_e, [target([])])
    out_i = loss_fn(raws_i, [target([box], [True])])
    assert out_i["num_pos"].item() == 0 and out_i["loss_box"].item() == 0
    (out_e["loss"] + out_i["loss"]).backward()

    # Every cell in the objectness loss gets a non-zero gradient, so counting them counts the cells.
    n_empty = sum(int((g != 0).sum()) for g in obj_grads(raws_e))
    n_ignored = sum(int((g != 0).sum()) for g in obj_grads(raws_i))
    assign = loss_fn.assigner(
        torch.tensor([[0.0, *box, 1.0]]), head.anchors, head.strides, [(8, 8), (4, 4), (2, 2)]
    )
    assert sum(m.num for m in assign) > 0
    assert n_ignored == n_empty - sum(m.num for m in assign) < n_empty
    for g, m in zip(obj_grads(raws_i), assign, strict=True):
        assert (g[m.b, m.a, m.gy, m.gx] == 0).all()


TWO_FACES = [target([]), target([[20.0, 18.0, 30.0, 31.0], [40.0, 8.0, 60.0, 34.0]])]


def test_face_gives_positives_and_box_loss() -> None:
    head, raws = make_head(), make_raws(batch=2)
    out = YOLOLoss(assigner=YOLOv4Assigner(), decoder=head, obj_iou_target=False)(raws, TWO_FACES)
    assert out["num_pos"].item() >= 2 and out["loss_box"].item() > 0
    out["loss"].backward()
    assert all(torch.isfinite(r.grad).all() for r in raws)
    assert any(r.grad[1, ..., :4].abs().sum() > 0 for r in raws)  # box gradient only where the faces are
    assert all(r.grad[0, ..., :4].abs().sum() == 0 for r in raws)
    assert any((r.grad[1, ..., 4] < 0).any() for r in raws)  # positives pushed towards "face"


def test_objectness_target_is_ciou_at_positives() -> None:
    # At a positive cell the logit gradient is proportional to sigmoid(0) - target: the CIoU target
    # (< 1 for these anchor-shaped boxes) pushes up less than the target 1.
    head = make_head()
    grads = {}
    for flag in (True, False):
        raws = make_raws(batch=2)
        YOLOLoss(assigner=YOLOv4Assigner(), decoder=head, obj_iou_target=flag)(raws, TWO_FACES)["loss"].backward()
        grads[flag] = obj_grads(raws)
    n_pos = 0
    for g_ciou, g_one in zip(grads[True], grads[False], strict=True):
        pos = g_one < 0
        n_pos += int(pos.sum())
        assert (g_ciou[pos] > g_one[pos]).all()
        assert torch.equal(g_ciou[~pos], g_one[~pos])  # negatives unaffected
    assert n_pos > 0


def test_ignore_iou_masks_good_prediction_only_in_its_image() -> None:
    head = make_head()
    box = [16.0, 16.0, 48.0, 48.0]  # centre (32, 32): assigned at column/row 4 on level 0, never 3
    raws = make_raws(batch=2)
    with torch.no_grad():  # level 0, anchor 0 (4x5), cell (3, 3) predicts ~[15.2, 15.2, 47.2, 47.2]: IoU 0.9
        for r in raws[:1]:
            r[:, 0, 3, 3, 0:2] = math.log(0.9 / 0.1)
            r[:, 0, 3, 3, 2] = math.log(32 / 4)
            r[:, 0, 3, 3, 3] = math.log(32 / 5)
    tg = [target([box]), target([])]
    YOLOLoss(assigner=YOLOv4Assigner(), decoder=head, ignore_iou=0.7)(raws, tg)["loss"].backward()
    assert raws[0].grad[0, 0, 3, 3, 4] == 0  # overlaps the face of its own image: not punished
    assert raws[0].grad[1, 0, 3, 3, 4] > 0  # same prediction in the empty image: a negative


def test_degenerate_predictions_stay_finite() -> None:
    head, raws = make_head(wh_mode="sigmoid"), make_raws(fill=-200.0)  # sizes underflow to 0
    out = YOLOLoss(assigner=YOLOv4Assigner(), decoder=head)(raws, [target([[20.0, 18.0, 30.0, 31.0]])])
    out["loss"].backward()
    assert torch.isfinite(out["loss"]) and all(torch.isfinite(r.grad).all() for r in raws)


def test_loss_decreases_when_moving_towards_targets() -> None:
    torch.manual_seed(0)
    head = make_head(scale_x_y=2.0)
    raws = [(0.1 * torch.randn(2, 3, SIZE // s, SIZE // s, 5)).requires_grad_() for s in (8, 16, 32)]
    tg = [target([[20.0, 18.0, 30.0, 31.0]]), target([[40.0, 8.0, 60.0, 34.0], [2.0, 40.0, 14.0, 54.0]])]
    loss_fn = YOLOLoss(assigner=YOLOv4Assigner(near_cells=True), decoder=head)
    opt = torch.optim.Adam(raws, lr=0.1)  # per-element steps: plain SGD crawls on a mean over many cells
    first = loss_fn(raws, tg)
    for _ in range(20):
        opt.zero_grad()
        out = loss_fn(raws, tg)
        out["loss"].backward()
        opt.step()
    last = loss_fn(raws, tg)
    assert last["loss"].item() < 0.5 * first["loss"].item()
    assert last["loss_box"].item() < 0.5 * first["loss_box"].item()


def test_near_cells_with_small_scale_is_refused_when_built() -> None:
    with pytest.raises(ValueError, match="near_cells.*scale_x_y"):
        YOLOLoss(assigner=YOLOv4Assigner(near_cells=True), decoder=make_head(scale_x_y=1.05))
    YOLOLoss(assigner=YOLOv4Assigner(near_cells=True), decoder=make_head(scale_x_y=2.0))  # the fitting pair


def test_balance_must_match_levels_when_built() -> None:
    with pytest.raises(ValueError, match="balance has 2 weights but the model has 3 levels"):
        YOLOLoss(assigner=YOLOv4Assigner(), decoder=make_head(), balance=[1.0, 1.0])


def test_max_iou_per_image_matches_per_image_box_iou(monkeypatch: pytest.MonkeyPatch) -> None:
    g = torch.Generator().manual_seed(0)
    counts = [0, 7, 2, 25]
    rows = []
    for b, n in enumerate(counts):
        xy = torch.rand(n, 2, generator=g) * 50
        rows.append(
            torch.cat(
                (
                    torch.full((n, 1), float(b)),
                    xy,
                    xy + 5 + torch.rand(n, 2, generator=g) * 20,
                    torch.zeros(n, 1),
                ),
                1,
            )
        )
    tcat = torch.cat(rows)
    xy = torch.rand(4, 30, 2, generator=g) * 50
    pred = torch.cat((xy, xy + 5 + torch.rand(4, 30, 2, generator=g) * 20), 2)
    gt, valid = pad_per_image(tcat, 4)
    assert gt.shape == (4, 25, 4) and valid.sum(1).tolist() == counts
    monkeypatch.setattr(targets, "_IOU_CHUNK", 100)  # force several gt blocks
    got = max_iou_per_image(pred, gt, valid)
    for b, n in enumerate(counts):
        want = box_iou(pred[b], tcat[tcat[:, 0] == b, 1:5]).amax(1) if n else torch.zeros(30)
        torch.testing.assert_close(got[b], want)
