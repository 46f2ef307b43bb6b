"""Parameters and FLOPs per module (torch.utils.flop_counter) and facedet-model-info (facedet/cli/model_info.py)."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from facedet.cli import model_info as tool
from facedet.models import build_detector
from facedet.models.info import model_info
from facedet.models.layers import count_parameters


def test_conv_flops_follow_the_multiply_add_formula() -> None:
    conv = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.Conv2d(8, 4, 1, stride=2, bias=False))
    info = model_info(conv, 32)
    first = 2 * 8 * 3 * 3 * 3 * 32 * 32  # 2 FLOPs per multiply-add, per output element
    second = 2 * 4 * 8 * 16 * 16
    assert info.flops == first + second
    assert [(m.name, m.flops) for m in info.modules] == [("0", first), ("1", second)]
    assert info.params == count_parameters(conv) == info.trainable


def test_detector_figures_add_up(compose_cfg) -> None:
    det = build_detector(compose_cfg(["model.freeze_bn_gamma=true"]).model)
    det.train()
    running = det.backbone.stem.bn.running_mean.clone()
    info = model_info(det, 128, depth=2)
    assert det.training and torch.equal(det.backbone.stem.bn.running_mean, running)  # state untouched
    top = {m.name: m for m in info.modules if "." not in m.name}
    assert set(top) == {"backbone", "neck", "head"}
    assert sum(m.flops for m in top.values()) == info.flops  # the forward pass is these three
    assert sum(m.params for m in top.values()) == info.params == count_parameters(det)
    # ModuleList containers are never called themselves: their figures are their children's sum.
    stages = next(m for m in info.modules if m.name == "backbone.stages")
    assert stages.flops > 0 and stages.flops < top["backbone"].flops
    bn_scales = sum(m.weight.numel() for m in det.modules() if isinstance(m, nn.BatchNorm2d))
    assert info.params - info.trainable == bn_scales
    # Convolutions only: FLOPs grow exactly with the input area.
    assert model_info(det, 256).flops == 4 * info.flops
    assert "GFLOPs at 128x128" in info.summary() and "frozen" in info.summary()


def test_model_info_tool(tmp_path, capsys) -> None:
    out = tmp_path / "info.json"
    assert tool.main(["model=yolov4_tiny", "data.img_size=128", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    figures = json.loads(out.read_text())
    assert figures["model"] == "yolov4_tiny" and figures["img_size"] == 128
    assert "backbone" in printed and "yolov4_tiny: " in printed and "GFLOPs at 128x128" in printed
    assert f"{figures['params'] / 1e6:.3f} M parameters" in printed
    assert set(figures["modules"]) >= {"backbone", "neck", "head", "head.convs"}


def test_model_info_tool_rejects_typos(capsys) -> None:
    with pytest.raises(SystemExit) as e:
        tool.main(["model=yolov4_tnyi"])
    assert e.value.code == 2
    assert "yolov4_tiny" in capsys.readouterr().err  # Hydra lists the available options
