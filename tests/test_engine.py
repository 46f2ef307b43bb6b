"""Engine parts: schedule, optimizer groups, EMA, atomic and safe checkpoints."""

from __future__ import annotations

import math
import pickle

import pytest
import torch
from torch import nn

from facedet.builders import select_device
from facedet.checkpoint import CheckpointError, load_checkpoint, load_model_state, model_weights, save_checkpoint
from facedet.engine.ema import ModelEMA
from facedet.engine.optim import WarmupCosine, build_optimizer, build_schedule
from facedet.registry import ConfigError


def test_warmup_is_linear_then_cosine_to_the_final_ratio():
    f = WarmupCosine(total_steps=110, warmup_steps=10, final_ratio=0.05, warmup_start=0.1)
    assert f(0) == pytest.approx(0.1)
    assert f(5) == pytest.approx(0.1 + 0.9 * 0.5)
    assert f(10) == pytest.approx(1.0)
    assert f(60) == pytest.approx(0.05 + 0.95 * 0.5)  # half-way through the cosine
    assert f(110) == pytest.approx(0.05)
    values = [f(s) for s in range(10, 111)]
    assert all(a >= b for a, b in zip(values, values[1:], strict=False))


def test_no_weight_decay_on_batchnorm_and_biases():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Conv2d(4, 2, 1, bias=True))
    opt = build_optimizer(model, lr=0.1, weight_decay=1e-3)
    decay = {id(p) for p in opt.param_groups[0]["params"]}
    no_decay = {id(p) for p in opt.param_groups[1]["params"]}
    assert opt.param_groups[0]["weight_decay"] == 1e-3 and opt.param_groups[1]["weight_decay"] == 0
    assert decay == {id(model[0].weight), id(model[2].weight)}
    assert no_decay == {id(model[0].bias), id(model[1].weight), id(model[1].bias), id(model[2].bias)}
    assert opt.defaults["nesterov"] and opt.defaults["momentum"] == pytest.approx(0.937)


def test_ema_follows_the_formula():
    model = nn.Linear(2, 1, bias=False)
    nn.init.constant_(model.weight, 1.0)
    ema = ModelEMA(model, decay=0.9, tau=1.0)
    nn.init.constant_(model.weight, 3.0)
    ema.update(model)
    d = 0.9 * (1 - math.exp(-1))
    assert ema.module.weight[0, 0].item() == pytest.approx(d * 1.0 + (1 - d) * 3.0)
    assert not any(p.requires_grad for p in ema.module.parameters())


def test_checkpoint_roundtrip_leaves_no_temporary_files(tmp_path):
    state = {"model": {"w": torch.arange(4.0)}, "epoch": 3, "config": {"a": [1, 2]}}
    save_checkpoint(state, tmp_path / "ck" / "last.pt")
    save_checkpoint(state | {"epoch": 4}, tmp_path / "ck" / "last.pt")
    assert sorted(p.name for p in (tmp_path / "ck").iterdir()) == ["last.pt"]
    back = load_checkpoint(tmp_path / "ck" / "last.pt")
    assert back["epoch"] == 4 and torch.equal(back["model"]["w"], torch.arange(4.0))


def test_a_failed_save_keeps_the_previous_checkpoint(tmp_path):
    path = tmp_path / "last.pt"
    save_checkpoint({"epoch": 1}, path)

    class Unsaveable:
        def __reduce__(self):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        save_checkpoint({"epoch": 2, "bad": Unsaveable()}, path)
    assert load_checkpoint(path)["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


class _RunsCode:
    def __reduce__(self):
        return (print, ("this would run at load time",))


def test_a_checkpoint_whose_pickle_would_run_code_is_refused(tmp_path):
    path = tmp_path / "evil.pt"
    with open(path, "wb") as f:
        torch.save({"model": {}, "payload": _RunsCode()}, f, pickle_module=pickle)
    with pytest.raises(CheckpointError, match="Refusing to load"):
        load_checkpoint(path)


def test_missing_or_garbage_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "nope.pt")
    (tmp_path / "garbage.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError):
        load_checkpoint(tmp_path / "garbage.pt")


def test_weights_of_another_model_fail_listing_the_keys():
    small, other = nn.Sequential(nn.Linear(2, 3)), nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 1))
    with pytest.raises(CheckpointError) as e:
        load_model_state(small, other.state_dict(), "other.pt")
    msg = str(e.value)
    assert "other.pt" in msg and "unexpected (2): 2.weight, 2.bias" in msg and "0.weight (4, 2) vs (3, 2)" in msg


@pytest.mark.parametrize("key", ["ema", "EMAHook"])  # today's state key, and the class name older checkpoints used
def test_model_weights_prefers_ema(key):
    ck = {"model": {"a": torch.zeros(1)}, "hooks": {key: {"module": {"a": torch.ones(1)}, "updates": 1}}}
    which, state = model_weights(ck)
    assert which == "ema" and state["a"].item() == 1.0 and model_weights(ck, use_ema=False)[0] == "model"
    assert model_weights({"model": {}})[0] == "model"


def test_device_selection():
    assert select_device("cpu").type == "cpu"
    assert select_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")


def test_adamw_is_selectable_and_keeps_the_decay_groups():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    opt = build_optimizer(model, {"type": "adamw", "lr": 0.002, "beta1": 0.9, "beta2": 0.999, "weight_decay": 1e-3})
    assert isinstance(opt, torch.optim.AdamW) and opt.defaults["betas"] == (0.9, 0.999)
    assert [g["weight_decay"] for g in opt.param_groups] == [1e-3, 0.0]
    with pytest.raises(ConfigError, match="Known optimizers: adamw, sgd. Did you mean 'adamw'"):
        build_optimizer(model, {"type": "adam_w", "lr": 0.1})
    with pytest.raises(ConfigError, match="Unknown key 'optim.momentum' for optimizer 'adamw'"):
        build_optimizer(model, {"type": "adamw", "lr": 0.1, "momentum": 0.9})  # AdamW's is beta1


def test_optimizer_and_schedule_of_the_shipped_configs(compose_cfg):
    """configs/optim/*.yaml build the optimizers of before (AdamW betas (0.9, 0.999) exactly, SGD
    Nesterov 0.937), the weight decay scaled by accumulation; configs/schedule/cosine.yaml the cosine."""
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    adamw = build_optimizer(model, compose_cfg(["optim=adamw"]).optim, weight_decay_scale=0.5)
    assert type(adamw) is torch.optim.AdamW and adamw.defaults["betas"] == (0.9, 0.999)
    assert adamw.defaults["lr"] == 0.002 and [g["weight_decay"] for g in adamw.param_groups] == [0.00025, 0.0]
    sgd = build_optimizer(model, compose_cfg(["optim=sgd"]).optim)
    assert type(sgd) is torch.optim.SGD and sgd.defaults["momentum"] == 0.937 and sgd.defaults["nesterov"]
    cfg = compose_cfg([])
    f = build_schedule(cfg.schedule, steps_per_epoch=10, epochs=20)
    assert (f.total_steps, f.warmup_steps) == (200, 100)  # warmup_min_steps=100 beats 1 epoch of 10
    with pytest.raises(ConfigError, match="Unknown schedule 'cosin' at 'schedule.type'"):
        build_schedule({**cfg.schedule, "type": "cosin"}, steps_per_epoch=10, epochs=2)
