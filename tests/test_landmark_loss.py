"""Landmark losses: WingLoss and smooth-L1 by hand, and the YOLO loss's landmark term: masked per
point (absent points give neither a value nor a gradient), faces without points leave the box and
objectness terms as a model without landmarks computes them, ignored faces train no points, and a
few training steps reduce it."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from facedet.assign import YOLOv4Assigner
from facedet.losses import SmoothL1Loss, WingLoss, YOLOLoss, landmarks_to_tensor
from facedet.models import build_detector
from facedet.models.heads import yolo_decode
from facedet.registry import LANDMARK_LOSSES, build

SIZE = 64  # input pixels: grids 8x8, 4x4, 2x2
ANCHORS = torch.tensor([[[4.0, 5.0], [8.0, 10.0], [12.0, 14.0]], [[16.0, 20.0], [24.0, 28.0], [32.0, 36.0]],
                        [[40.0, 48.0], [52.0, 56.0], [64.0, 64.0]]])
# One face exactly the shape of anchor 1 of level 1 (24 x 28), centred on cell (2, 2) of stride 16,
# whose centre is (40, 40): with anchor_iou 0.9 it is the only positive.
FACE = [28.0, 26.0, 52.0, 54.0]
POINTS = torch.tensor([[34.0, 36.0], [46.0, 36.0], [40.0, 42.0], [35.0, 48.0], [45.0, 47.0]])


def make_head(k: int) -> SimpleNamespace:
    """Stand-in for the head's decoding (``YOLOHead.decoding()``) with ``k`` points."""
    head = SimpleNamespace(anchors=ANCHORS, strides=[8, 16, 32], scale_x_y=[1.0] * 3, num_landmarks=k)
    head.decode_level = lambda raw, i: yolo_decode.decode_level(raw, ANCHORS[i], head.strides[i], 1.0, "exp", k)
    return head


def make_loss(k: int = 5, **kw) -> YOLOLoss:
    return YOLOLoss(assigner=YOLOv4Assigner(anchor_iou=0.9), decoder=make_head(k),
                    landmark_loss=WingLoss() if k else None, **kw)


def make_raws(channels: int = 15, seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [(0.1 * torch.randn(1, 3, SIZE // s, SIZE // s, channels, generator=g)).requires_grad_()
            for s in (8, 16, 32)]


def target(points: torch.Tensor | None, ignore: bool = False) -> dict[str, torch.Tensor]:
    return {"boxes": torch.tensor([FACE]), "labels": torch.zeros(1, dtype=torch.int64),
            "ignore": torch.tensor([ignore]),
            "landmarks": torch.full((1, 5, 2), float("nan")) if points is None else points[None]}


def wing(x: float, w: float = 10.0, e: float = 2.0) -> float:
    return w * math.log(1 + abs(x) / e) if abs(x) < w else abs(x) - (w - w * math.log(1 + w / e))


def test_wing_loss_by_hand():
    loss = WingLoss()
    x = torch.tensor([0.0, 1.0, -3.0, 9.999, 10.0, 12.0], requires_grad=True)
    out = loss(x, torch.zeros(6))
    assert out.tolist() == pytest.approx([0.0, 10 * math.log(1.5), 10 * math.log(2.5), wing(9.999), wing(10.0),
                                          12 - (10 - 10 * math.log(6))], rel=1e-6)
    assert out[3].item() == pytest.approx(out[4].item(), abs=1e-3)  # the pieces meet at |x| = w
    out.sum().backward()
    assert x.grad[1].item() == pytest.approx(10 / 3) and x.grad[5].item() == pytest.approx(1.0)
    assert repr(build({"type": "wing"}, LANDMARK_LOSSES)) == "WingLoss(w=10.0, e=2.0)"  # yolov5-face's


def test_smooth_l1_by_hand():
    loss = build({"type": "smooth_l1", "beta": 0.5}, LANDMARK_LOSSES)
    assert isinstance(loss, SmoothL1Loss)
    out = loss(torch.tensor([0.2, -2.0]), torch.zeros(2))
    assert out.tolist() == pytest.approx([0.5 * 0.2**2 / 0.5, 2.0 - 0.25])
    assert SmoothL1Loss().beta == 0.1 and sorted(LANDMARK_LOSSES.names()) == ["smooth_l1", "wing"]


def test_landmark_term_by_hand_with_an_absent_point():
    points = POINTS.clone()
    points[2] = float("nan")  # the nose is absent
    raws = make_raws()
    out = make_loss()(raws, [target(points)])
    assert float(out["num_pos"]) == 1.0
    with torch.no_grad():
        pred = yolo_decode.decode_level(raws[1], ANCHORS[1], 16, 1.0, "exp", 5)[0, 1, 2, 2, 5:].view(5, 2)
    anchor = ANCHORS[1, 1]
    present = [0, 1, 3, 4]
    errs = ((pred[present] - points[present]) / anchor).flatten().tolist()
    expected = 0.05 * sum(wing(e) for e in errs) / len(errs)
    assert out["loss_landmark"].item() == pytest.approx(expected, rel=1e-5)
    assert out["loss"].item() == pytest.approx((out["loss_box"] + out["loss_obj"] + out["loss_landmark"]).item())
    out["loss"].backward()
    grads = raws[1].grad[0, 1, 2, 2, 5:].view(5, 2)
    assert all(torch.isfinite(r.grad).all() for r in raws)
    assert torch.equal(grads[2], torch.zeros(2))  # no gradient from the absent point
    assert (grads[present] != 0).all()
    # only the positive's points are trained
    mask = torch.ones_like(raws[1].grad[..., 5:], dtype=torch.bool)
    mask[0, 1, 2, 2] = False
    assert not raws[1].grad[..., 5:][mask].any() and not raws[0].grad[..., 5:].any()


def test_faces_without_points_train_boxes_as_a_model_without_landmarks():
    raws = make_raws()
    with_points = make_loss()(raws, [target(None)])
    box_raws = [r.detach()[..., :5].clone().requires_grad_() for r in raws]
    plain = make_loss(k=0)(box_raws, [target(None)])
    assert list(plain) == ["loss_box", "loss_obj", "loss", "num_pos"]
    assert list(with_points) == ["loss_box", "loss_obj", "loss_landmark", "loss", "num_pos"]
    assert torch.equal(with_points["loss_box"], plain["loss_box"])
    assert torch.equal(with_points["loss_obj"], plain["loss_obj"])
    assert with_points["loss_landmark"].item() == 0.0 and torch.isfinite(with_points["loss"])
    with_points["loss"].backward()
    plain["loss"].backward()
    for r, p in zip(raws, box_raws, strict=True):
        assert torch.equal(r.grad[..., :5], p.grad) and not r.grad[..., 5:].any()
    # and with points: the box and objectness terms do not change
    points = make_loss()(raws, [target(POINTS)])
    assert torch.equal(points["loss_box"], plain["loss_box"]) and torch.equal(points["loss_obj"], plain["loss_obj"])
    assert points["loss_landmark"].item() > 0


def test_ignored_faces_train_no_points():
    out = make_loss()(make_raws(), [target(POINTS, ignore=True)])
    assert float(out["num_pos"]) == 0.0 and out["loss_landmark"].item() == 0.0


def test_targets_without_a_landmarks_entry_have_no_points():
    tg = [{"boxes": torch.tensor([FACE, [5.0, 5.0, 5.0, 9.0]])}, {"boxes": torch.zeros((0, 4))}]
    pts = landmarks_to_tensor(tg, 5, "cpu")
    assert pts.shape == (1, 5, 2) and pts.isnan().all()  # the zero-width box is dropped, as by targets_to_tensor
    with pytest.raises(ValueError, match=r"\(1, 5, 2\)"):
        landmarks_to_tensor([{"boxes": torch.tensor([FACE]), "landmarks": torch.zeros(1, 4, 2)}], 5, "cpu")


def test_a_few_steps_reduce_the_landmark_loss(compose_cfg):
    overrides = ["model=yolov4_nano", "model.backbone.width=0.125", "model.head.num_landmarks=5",
                 "model.loss.landmark_loss={type: wing}"]
    torch.manual_seed(0)
    det = build_detector(compose_cfg(overrides).model).train()
    images = torch.rand(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(3))
    half = POINTS.clone()
    half[3:] = float("nan")  # a face with only its upper points
    tg = [{"boxes": torch.tensor([FACE]), "landmarks": POINTS[None]},
          {"boxes": torch.tensor([FACE, [2.0, 4.0, 20.0, 26.0]]),
           "landmarks": torch.stack((half, torch.full((5, 2), float("nan"))))}]  # and one with none
    opt = torch.optim.Adam(det.parameters(), lr=3e-3)
    history = []
    for _ in range(25):
        out = det.loss(images, tg)
        assert all(torch.isfinite(v) for v in out.values())
        history.append(out["loss_landmark"].item())
        opt.zero_grad()
        out["loss"].backward()
        assert all(torch.isfinite(p.grad).all() for p in det.parameters() if p.grad is not None)
        opt.step()
    assert sum(history[-5:]) / 5 < 0.6 * history[0], history  # about 0.49 of it (seeded)
