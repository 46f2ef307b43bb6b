"""Test-time augmentation: the un-flip and un-scale of boxes and landmarks (the mirror swaps left
and right points), merging before NMS, mode parsing."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from facedet.inference.tta import TTA, decode_candidates, predict_with_tta, resize_to_stride
from facedet.postprocess import NMS
from facedet.registry import ConfigError

# A box at fixed fractions of whatever image the fake model sees: (x1, y1, x2, y2) / (W, H, W, H)
FRACTIONS = torch.tensor([0.1, 0.2, 0.3, 0.5])
# Five points inside that box, as (x, y) fractions: left eye, right eye, nose, left and right mouth corner
POINT_FRACTIONS = torch.tensor([[0.15, 0.3], [0.25, 0.3], [0.2, 0.35], [0.16, 0.45], [0.24, 0.45]])


class FractionModel(nn.Module):
    """Predicts one box at fixed fractions of its input (so every scale must map back to the same
    box), through the Detector's public API only (candidates, max_stride, postprocess, predict)."""

    max_stride = 32

    def __init__(self, points: bool = False):
        super().__init__()
        self.postprocess = NMS(score_thresh=0.0, nms_iou=0.5)
        self.seen: list[tuple[int, int]] = []
        self.points = points

    def candidates(self, x):
        self.seen.append(tuple(x.shape[-2:]))
        b, _, h, w = x.shape
        box = FRACTIONS * torch.tensor([w, h, w, h], dtype=torch.float32)
        # score: mean brightness of the left half, so a mirrored image scores differently
        score = x[..., : w // 2].mean(dim=(1, 2, 3)).view(b, 1)
        points = (POINT_FRACTIONS * torch.tensor([w, h])).expand(b, 1, 5, 2).clone() if self.points else None
        return box.expand(b, 1, 4).clone(), score, points

    def predict(self, images):
        return self.postprocess(*self.candidates(images))


def test_flip_pass_is_mirrored_back():
    model = FractionModel()
    x = torch.zeros(2, 3, 64, 96)
    x[..., :48] = 1.0  # bright left half
    boxes, scores, points = decode_candidates(model, x, TTA.from_mode("flip"))
    assert points is None  # a model without landmarks
    w = 96
    assert boxes.shape == (2, 2, 4)
    assert boxes[0, 0].tolist() == pytest.approx([0.1 * w, 12.8, 0.3 * w, 32.0])
    # the mirrored pass saw the box at 0.1-0.3 of the mirrored image: 0.7-0.9 of the original
    assert boxes[0, 1].tolist() == pytest.approx([0.7 * w, 12.8, 0.9 * w, 32.0])
    assert scores[0].tolist() == pytest.approx([1.0, 0.0])


def test_flipped_landmarks_are_mirrored_back_with_left_and_right_swapped():
    model = FractionModel(points=True)
    x = torch.zeros(1, 3, 64, 100)
    boxes, _, points = decode_candidates(model, x, TTA.from_mode("flip"))
    assert points.shape == (1, 2, 5, 2)
    assert torch.allclose(points[0, 0], POINT_FRACTIONS * torch.tensor([100, 64]))
    # mirrored pass: the model saw the left eye at 0.15 of the mirrored image, i.e. the face's left
    # eye is at 0.85 of the original: the image's *right* eye. After the swap the image-left eye
    # (index 0) is the one at 0.75, every point sits inside the mirrored box, and the mouth corners
    # swapped likewise
    expected = torch.tensor([[75.0, 19.2], [85.0, 19.2], [80.0, 22.4], [76.0, 28.8], [84.0, 28.8]])
    assert torch.allclose(points[0, 1], expected)
    assert (points[0, 1, :, 0] > boxes[0, 1, 0]).all() and (points[0, 1, :, 0] < boxes[0, 1, 2]).all()
    out = predict_with_tta(model, x, TTA.from_mode("flip_multiscale", [0.5, 1.0]))[0]
    assert out["landmarks"].shape == (len(out["boxes"]), 5, 2)


def test_landmarks_map_back_from_every_scale():
    model = FractionModel(points=True)
    x = torch.rand(1, 3, 128, 128)
    _, _, points = decode_candidates(model, x, TTA.from_mode("multiscale", [0.5, 1.5]))
    for k in range(2):
        assert torch.allclose(points[0, k], POINT_FRACTIONS * 128)


def test_every_scale_maps_back_to_input_pixels_and_one_nms_merges_them():
    model = FractionModel()
    x = torch.rand(1, 3, 128, 128)
    tta = TTA.from_mode("multiscale", [0.5, 1.0, 1.5])
    boxes, _, _ = decode_candidates(model, x, tta)
    assert model.seen == [(64, 64), (128, 128), (192, 192)]
    expected = (FRACTIONS * 128).tolist()
    for k in range(3):
        assert boxes[0, k].tolist() == pytest.approx(expected)
    out = predict_with_tta(model, x, tta)[0]
    assert out["boxes"].tolist() == [pytest.approx(expected)]  # three identical candidates, one detection


def test_no_tta_is_the_models_own_predict():
    model = FractionModel()
    x = torch.rand(2, 3, 64, 64)
    out = predict_with_tta(model, x, TTA.from_mode("none"))
    assert model.seen == [(64, 64)] and len(out) == 2


def test_sizes_round_to_the_stride():
    x = torch.rand(1, 3, 96, 160)
    assert resize_to_stride(x, 1.0, 32) is x
    assert resize_to_stride(x, 0.75, 32).shape[-2:] == (64, 128)  # 72 -> 64, 120 -> 128
    assert resize_to_stride(x, 0.1, 32).shape[-2:] == (32, 32)  # never below one stride


def test_modes_and_their_record():
    assert TTA.from_mode("flip_multiscale", [0.5, 1]).describe() == {"mode": "flip_multiscale", "flip": True,
                                                                      "scales": [0.5, 1.0]}
    assert not TTA.from_mode("none", [0.5, 2]).active  # scales only matter for multiscale
    with pytest.raises(ConfigError, match="Did you mean 'flip'"):
        TTA.from_mode("flp")
    with pytest.raises(ConfigError, match="positive"):
        TTA.from_mode("multiscale", [1.0, -1.0])
