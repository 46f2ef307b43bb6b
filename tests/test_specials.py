"""Options from YOLOv4's bag of specials, each a config switch: SE, SAM, DropBlock and its schedule,
activations by name, BatchNorm with frozen gamma."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torchvision.ops import SqueezeExcitation

from facedet.engine.model_hooks import DropBlockHook, model_hooks
from facedet.engine.optim import build_optimizer
from facedet.models import build_detector
from facedet.models.layers import count_parameters, make_act
from facedet.models.specials import SAM, DropBlock, freeze_bn_gamma
from facedet.registry import ACTIVATIONS, BACKBONES, ConfigError, build

SMALL = {"width": 0.25, "depth": 0.33}


@pytest.mark.parametrize("backbone", ["cspdarknet", "darknet53"])
def test_se_switch_adds_squeeze_excitation(backbone: str) -> None:
    plain = build({"type": backbone, **SMALL}, BACKBONES)
    se = build({"type": backbone, **SMALL, "se": True}, BACKBONES).eval()
    n_blocks = sum(1 for m in se.modules() if isinstance(m, SqueezeExcitation))
    assert n_blocks == sum(se.depths) and not any(isinstance(m, SqueezeExcitation) for m in plain.modules())
    assert count_parameters(se) > count_parameters(plain)
    # SE re-weights channels: zeroing its excitation weights and biases makes every scale 0.5.
    block = next(m for m in se.modules() if isinstance(m, SqueezeExcitation))
    nn.init.zeros_(block.fc2.weight)
    nn.init.zeros_(block.fc2.bias)
    x = torch.rand(1, block.fc1.in_channels, 4, 4)
    assert torch.allclose(block(x), 0.5 * x)


def test_sam_is_pointwise_attention() -> None:
    sam = SAM(8).eval()
    x = torch.rand(2, 8, 5, 5)
    y = sam(x)
    assert y.shape == x.shape
    att = torch.sigmoid(sam.attn.bn(sam.attn.conv(x)))
    assert torch.allclose(y, x * att)  # a weight per position and channel, no pooling
    assert (y.abs() <= x.abs() + 1e-6).all()


def test_sam_switch_in_the_head(compose_cfg) -> None:
    det = build_detector(compose_cfg(["model.head.sam=true"]).model)
    assert sum(isinstance(m, SAM) for m in det.head.modules()) == 3
    assert not any(isinstance(m, SAM) for m in build_detector(compose_cfg().model).modules())
    raws = det.eval()(torch.rand(1, 3, 64, 64))
    assert [tuple(r.shape) for r in raws] == [(1, 3, 8, 8, 5), (1, 3, 4, 4, 5), (1, 3, 2, 2, 5)]


def test_dropblock_drops_blocks_only_in_training() -> None:
    torch.manual_seed(0)
    db = DropBlock(0.3, block_size=3)
    x = torch.ones(4, 8, 16, 16)
    y = db(x)
    zero_fraction = (y == 0).float().mean().item()
    assert 0.15 < zero_fraction < 0.45  # about drop_prob of the cells are dropped, in blocks
    assert torch.allclose(y.mean(), torch.tensor(1.0), atol=0.05)  # rescaled to keep the mean
    assert torch.equal(db.eval()(x), x)
    db.train().progress = 0.0
    assert torch.equal(db(x), x)  # the schedule's start: nothing dropped
    # A block larger than the map shrinks to the largest odd size that fits (4x4 map -> 3).
    assert DropBlock(0.2, block_size=7)(torch.ones(1, 2, 4, 4)).shape == (1, 2, 4, 4)


def test_dropblock_bad_options() -> None:
    with pytest.raises(ConfigError, match="dropblock_size"):
        build({"type": "cspdarknet", **SMALL, "dropblock": 0.1, "dropblock_size": 4}, BACKBONES)
    with pytest.raises(ConfigError, match="dropblock must lie"):
        DropBlock(1.5)


class _FakeTrainer:
    steps_per_epoch = 10
    max_epochs = 4
    step = 0


def test_dropblock_hook_ramps_keep_probability_linearly() -> None:
    backbone = build({"type": "cspdarknet", **SMALL, "dropblock": 0.2}, BACKBONES)
    hooks = model_hooks(backbone)
    assert len(hooks) == 1 and isinstance(hooks[0], DropBlockHook)
    blocks = [m for m in backbone.modules() if isinstance(m, DropBlock)]
    assert len(blocks) == 3
    hook, trainer = hooks[0], _FakeTrainer()
    hook.trainer = trainer
    hook.before_train()
    assert all(b.p == 0.0 for b in blocks)
    for step, expected in [(10, 0.05), (20, 0.1), (40, 0.2), (55, 0.2)]:  # keep prob 1 -> 0.8 over 40 steps
        trainer.step = step
        hook.after_step()
        assert all(b.p == pytest.approx(expected) for b in blocks)
    assert model_hooks(build({"type": "cspdarknet", **SMALL}, BACKBONES)) == []


@pytest.mark.parametrize("name", ["mish", "leaky", "silu", "relu", "hardswish"])
def test_activations_by_name(name: str) -> None:
    x = torch.linspace(-4, 4, 81)
    reference = {
        "mish": x * torch.tanh(nn.functional.softplus(x)),
        "leaky": torch.where(x > 0, x, 0.1 * x),
        "silu": x * torch.sigmoid(x),
        "relu": x.clamp(min=0),
        "hardswish": x * (x + 3).clamp(0, 6) / 6,
    }[name]
    assert torch.allclose(make_act(name)(x.clone()), reference, atol=1e-6)
    backbone = build({"type": "darknet53", **SMALL, "act": name}, BACKBONES)
    assert type(backbone.stem.act) is type(ACTIVATIONS.get(name)())


def test_frozen_gamma_stays_fixed_under_training(compose_cfg) -> None:
    torch.manual_seed(0)
    cfg = compose_cfg(["model.freeze_bn_gamma=true", "model.backbone.width=0.125", "model.neck.width=0.25"])
    det = build_detector(cfg.model)
    bns = [m for m in det.modules() if isinstance(m, nn.BatchNorm2d)]
    assert bns and all(not bn.weight.requires_grad and bn.bias.requires_grad for bn in bns)
    gammas = [bn.weight.detach().clone() for bn in bns]
    betas = [bn.bias.detach().clone() for bn in bns]
    conv = det.backbone.stem.conv.weight.detach().clone()
    opt = build_optimizer(det, lr=0.1, weight_decay=0.05)
    assert all(p.requires_grad for g in opt.param_groups for p in g["params"])
    face = {"boxes": torch.tensor([[8.0, 8.0, 40.0, 44.0]]), "labels": torch.zeros(1, dtype=torch.long)}
    det.loss(torch.rand(2, 3, 64, 64), [face, face])["loss"].backward()
    opt.step()
    assert all(torch.equal(bn.weight, g) for bn, g in zip(bns, gammas, strict=True))
    assert any(not torch.equal(bn.bias, b) for bn, b in zip(bns, betas, strict=True))
    assert not torch.equal(det.backbone.stem.conv.weight, conv)
    assert freeze_bn_gamma(nn.Sequential(nn.Conv2d(1, 1, 1))) == 0
    with pytest.raises(ConfigError, match="freeze_bn_gamma"):
        build_detector(compose_cfg(["model.freeze_bn_gamma=yes"]).model)


def test_bn_momentum_reaches_every_batchnorm_and_bad_values_fail(compose_cfg):
    cfg = compose_cfg(["model.bn_momentum=0.2"])
    det = build_detector(cfg.model)
    bns = [m for m in det.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bns and all(m.momentum == 0.2 for m in bns)
    assert {m.momentum for m in build_detector(compose_cfg(["model=yolov4"]).model).modules()
            if isinstance(m, torch.nn.BatchNorm2d)} == {0.03}
    with pytest.raises(ConfigError, match="model.bn_momentum"):
        build_detector(compose_cfg(["model.bn_momentum=1.5"]).model)
