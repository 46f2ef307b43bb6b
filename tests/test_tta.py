"""Test-time augmentation: the un-flip and un-scale of boxes, merging before NMS, mode parsing."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from facedet.inference.tta import TTA, decode_candidates, predict_with_tta, resize_to_stride
from facedet.postprocess import NMS
from facedet.registry import ConfigError

# A box at fixed fractions of whatever image the fake model sees: (x1, y1, x2, y2) / (W, H, W, H)
FRACTIONS = torch.tensor([0.1, 0.2, 0.3, 0.5])


class FractionModel(nn.Module):
    """Predicts one box at fixed fractions of its input (so every scale must map back to the same
    box), through the Detector's public API only (candidates, max_stride, postprocess, predict)."""

    max_stride = 32

    def __init__(self):
        super().__init__()
        self.postprocess = NMS(score_thresh=0.0, nms_iou=0.5)
        self.seen: list[tuple[int, int]] = []

    def candidates(self, x):
        self.seen.append(tuple(x.shape[-2:]))
        b, _, h, w = x.shape
        box = FRACTIONS * torch.tensor([w, h, w, h], dtype=torch.float32)
        # score: mean brightness of the left half, so a mirrored image scores differently
        score = x[..., : w // 2].mean(dim=(1, 2, 3)).view(b, 1)
        return box.expand(b, 1, 4).clone(), score

    def predict(self, images):
        return self.postprocess(*self.candidates(images))


def test_flip_pass_is_mirrored_back():
    model = FractionModel()
    x = torch.zeros(2, 3, 64, 96)
    x[..., :48] = 1.0  # bright left half
    boxes, scores = decode_candidates(model, x, TTA.from_mode("flip"))
    w = 96
    assert boxes.shape == (2, 2, 4)
    assert boxes[0, 0].tolist() == pytest.approx([0.1 * w, 12.8, 0.3 * w, 32.0])
    # the mirrored pass saw the box at 0.1-0.3 of the mirrored image: 0.7-0.9 of the original
    assert boxes[0, 1].tolist() == pytest.approx([0.7 * w, 12.8, 0.9 * w, 32.0])
    assert scores[0].tolist() == pytest.approx([1.0, 0.0])


def test_every_scale_maps_back_to_input_pixels_and_one_nms_merges_them():
    model = FractionModel()
    x = torch.rand(1, 3, 128, 128)
    tta = TTA.from_mode("multiscale", [0.5, 1.0, 1.5])
    boxes, _ = decode_candidates(model, x, tta)
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
