"""Five-point landmarks in the model: the head's extra outputs and their decoding, the Detector's
3-tuple of candidates, config mismatches refused at build time, and checkpoints of models without
points unchanged (tests/test_detector.py pins their state-dict keys and values)."""

from __future__ import annotations

import pytest
import torch

from facedet.models import build_detector
from facedet.models.heads import YOLOHead
from facedet.models.heads.yolo_decode import decode_level
from facedet.registry import ConfigError

SMALL = ["model=yolov4_nano", "model.backbone.width=0.25"]
POINTS = ["model.head.num_landmarks=5", "model.loss.landmark_loss={type: wing}"]
ANCHORS = [[10, 13, 16, 30, 33, 23], [30, 61, 62, 45, 59, 119], [116, 90, 156, 198, 373, 326]]
STRIDES = [8, 16, 32]


def _images() -> torch.Tensor:
    return torch.rand(2, 3, 96, 128, generator=torch.Generator().manual_seed(1))


def test_points_decode_relative_to_the_anchor_from_the_cell_centre():
    anchors = torch.tensor([[10.0, 20.0], [40.0, 30.0]])
    raw = torch.zeros(1, 2, 3, 4, 15)
    raw[0, 1, 2, 3, 5:7] = torch.tensor([0.5, -1.0])  # first point at anchor 1, row 2, column 3
    dec = decode_level(raw, anchors, stride=16, scale_x_y=1.0, wh_mode="exp", num_landmarks=5)
    assert dec.shape == (1, 2, 3, 4, 15)
    # a zero output is the cell centre: (column + 0.5, row + 0.5) * stride, for every point
    centre = torch.tensor([(0 + 0.5) * 16, (1 + 0.5) * 16])
    assert torch.equal(dec[0, 0, 1, 0, 5:].view(5, 2), centre.expand(5, 2))
    # point = raw * anchor (w, h) + centre
    assert dec[0, 1, 2, 3, 5:7].tolist() == [0.5 * 40 + 3.5 * 16, -1.0 * 30 + 2.5 * 16]
    # the box part is the box-only decoding, unchanged
    assert torch.equal(dec[..., :5], decode_level(raw[..., :5], anchors, 16, 1.0, "exp"))


def test_head_outputs_and_decode_with_points():
    head = YOLOHead(in_channels=[8, 16, 32], anchors=ANCHORS, strides=STRIDES, num_landmarks=5).eval()
    assert head.num_outputs == 15 and head.preds[0].out_channels == 3 * 15
    assert torch.equal(head.preds[0].bias.view(3, 15)[:, 5:], torch.zeros(3, 10))  # points start at the centre
    feats = [torch.rand(2, c, 64 // s, 64 // s) for c, s in zip([8, 16, 32], STRIDES, strict=True)]
    raws = head(feats)
    assert raws[0].shape == (2, 3, 8, 8, 15)
    boxes, scores, points = head.decode(raws)
    n = 3 * (8 * 8 + 4 * 4 + 2 * 2)
    assert boxes.shape == (2, n, 4) and scores.shape == (2, n) and points.shape == (2, n, 5, 2)
    # the same anchor's points and box come from one row: level 0, anchor 0, cell (0, 0) is row 0
    first = decode_level(raws[0], head.anchors[0], 8, head.scale_x_y[0], "exp", 5)[0, 0, 0, 0]
    assert torch.equal(points[0, 0].flatten(), first[5:])


@pytest.mark.parametrize("k", [3, -1, 10])
def test_only_zero_or_five_points(k):
    with pytest.raises(ConfigError, match="num_landmarks must be one of"):
        YOLOHead(in_channels=[8, 16, 32], anchors=ANCHORS, strides=STRIDES, num_landmarks=k)


def test_num_outputs_must_hold_the_points():
    with pytest.raises(ConfigError, match="at least 5 .* \\(15\\)"):
        YOLOHead(in_channels=[8, 16, 32], anchors=ANCHORS, strides=STRIDES, num_landmarks=5, num_outputs=10)


def test_detector_with_points_predicts_them(compose_cfg):
    torch.manual_seed(0)
    det = build_detector(compose_cfg([*SMALL, *POINTS]).model).eval()
    assert det.num_landmarks == 5
    x = _images()
    with torch.no_grad():
        boxes, scores, points = det.candidates(x)
    assert points.dtype == torch.float32 and points.shape == (*boxes.shape[:2], 5, 2)
    preds = det.predict(x)
    ref = det.postprocess(boxes, scores, points)
    for p, r in zip(preds, ref, strict=True):
        assert p["landmarks"].shape == (len(p["boxes"]), 5, 2)
        assert torch.equal(p["landmarks"], r["landmarks"]) and torch.equal(p["boxes"], r["boxes"])
    # each kept box carries its own candidate's points: find the box among the candidates
    p = preds[0]
    rows = (boxes[0][:, None] == p["boxes"][None]).all(-1).float().argmax(0)
    assert torch.equal(points[0, rows], p["landmarks"])


def test_state_dict_grows_only_in_the_prediction_convs(compose_cfg):
    plain = build_detector(compose_cfg(SMALL).model).state_dict()
    points = build_detector(compose_cfg([*SMALL, *POINTS]).model).state_dict()
    assert list(plain) == list(points)
    changed = [k for k in plain if plain[k].shape != points[k].shape]
    assert changed == [f"head.preds.{i}.{p}" for i in range(3) for p in ("weight", "bias")]
    assert all(points[k].shape[0] == 3 * 15 and plain[k].shape[0] == 3 * 5 for k in changed)


@pytest.mark.parametrize(("overrides", "keys"), [
    (["model.head.num_landmarks=5"], ["model.head.num_landmarks=5", "model.loss.landmark_loss"]),
    (["model.loss.landmark_loss={type: wing}"], ["model.loss.landmark_loss", "model.head.num_landmarks is 0"]),
    ([POINTS[0], "model.loss.landmark_loss={type: wings}"], ["'wings'", "model.loss.landmark_loss.type"]),
    ([POINTS[0], "model.loss.landmark_loss={type: wing, w: -1}"], ["model.loss.landmark_loss", "w > 0"]),
])
def test_landmark_options_that_do_not_fit_are_config_errors(compose_cfg, overrides, keys):
    with pytest.raises(ConfigError) as e:
        build_detector(compose_cfg([*SMALL, *overrides]).model)
    assert all(k in str(e.value) for k in keys), str(e.value)


def test_landmark_loss_options_from_the_config(compose_cfg):
    cfg = compose_cfg([*SMALL, "model.head.num_landmarks=5", "model.loss.landmark_loss={type: smooth_l1, beta: 0.2}",
                       "model.loss.landmark_weight=0.5"]).model
    loss = build_detector(cfg).loss_fn
    assert type(loss.landmark_loss).__name__ == "SmoothL1Loss" and loss.landmark_loss.beta == 0.2
    assert loss.landmark_weight == 0.5


def test_a_model_without_points_has_no_landmark_term(compose_cfg):
    det = build_detector(compose_cfg(SMALL).model)
    tg = [{"boxes": torch.tensor([[10.0, 12.0, 40.0, 50.0]]), "landmarks": torch.rand(1, 5, 2) * 40},
          {"boxes": torch.zeros((0, 4))}]
    out = det.loss(_images(), tg)
    assert list(out) == ["loss_box", "loss_obj", "loss", "num_pos"]
    assert det.loss_fn.landmark_loss is None


def test_a_model_config_from_before_landmarks_builds_the_same_model(compose_cfg):
    from omegaconf import OmegaConf

    cfg = OmegaConf.to_container(compose_cfg(SMALL).model, resolve=True)
    old = {**cfg, "head": {k: v for k, v in cfg["head"].items() if k != "num_landmarks"},
           "loss": {k: v for k, v in cfg["loss"].items() if k not in ("landmark_loss", "landmark_weight")}}
    assert cfg["head"]["num_landmarks"] == 0 and cfg["loss"]["landmark_loss"] is None
    torch.manual_seed(0)
    a = build_detector(cfg).eval()
    torch.manual_seed(0)
    b = build_detector(old).eval()
    assert b.num_landmarks == 0 and b.loss_fn.landmark_loss is None
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb) and all(torch.equal(sa[k], sb[k]) for k in sa)
