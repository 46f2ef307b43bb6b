"""Self-adversarial training: the perturbation raises the loss, stays within epsilon, leaves the
weights, their gradients and the BatchNorm statistics alone; NaN falls back and is counted."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from facedet.engine.sat import SATHook, adversarial_images
from facedet.models import build_detector

_NO_SCALER = torch.amp.GradScaler("cpu", enabled=False)  # the trainer's scaler off the GPU


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One torch thread: on a busy 2-core machine two threads ran these passes 6-10x slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _batch(n: int = 2, size: int = 64):
    g = torch.Generator().manual_seed(0)
    images = torch.rand(n, 3, size, size, generator=g) * 0.6 + 0.2
    targets = []
    for i in range(n):
        boxes = torch.tensor([[8.0 + i, 10.0, 30.0, 36.0], [36.0, 30.0, 58.0, 60.0 - i]])
        targets.append({"boxes": boxes, "labels": torch.zeros(2, dtype=torch.long),
                        "ignore": torch.zeros(2, dtype=torch.bool), "landmarks": torch.full((2, 5, 2), float("nan"))})
    return {"images": images, "targets": targets, "metas": [{}] * n}


@pytest.fixture(scope="module")
def model():
    from hydra import compose, initialize_config_dir

    from .conftest import CONFIG_DIR

    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(config_name="train")
    torch.manual_seed(0)
    return build_detector(cfg.model).train()


def _bn_state(m: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in m.state_dict().items() if "running" in k or "num_batches" in k}


@pytest.mark.parametrize("epsilon", [0.02])
def test_perturbation_raises_the_loss_within_epsilon_and_touches_nothing_else(model, epsilon):
    batch = _batch()
    params = {k: p.detach().clone() for k, p in model.named_parameters()}
    bn = _bn_state(model)
    adv = adversarial_images(model, batch["images"], batch["targets"], epsilon=epsilon)
    assert adv is not None and adv.shape == batch["images"].shape and not adv.requires_grad
    diff = (adv - batch["images"]).abs()
    assert diff.max() <= epsilon + 1e-6 and diff.mean() > 0.5 * epsilon  # a full signed step (bar clipping)
    assert all(torch.equal(p, params[k]) for k, p in model.named_parameters())  # weights untouched
    assert all(p.grad is None for p in model.parameters())  # and given no gradient
    assert all(torch.equal(v, _bn_state(model)[k]) for k, v in bn.items())  # BN statistics as they were
    with torch.no_grad():  # (these passes update BN statistics; the checks above are done)
        clean = float(model.loss(batch["images"], batch["targets"])["loss"])
        attacked = float(model.loss(adv, batch["targets"])["loss"])
    assert attacked > clean * 1.01, (clean, attacked)


class _NaNModel(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.ones(1))

    def loss(self, images, targets, *, distill=True):  # the Detector.loss signature
        return {"loss": (images * self.w).sum() * float("nan")}


def test_nan_falls_back_to_clean_images_and_is_counted():
    hook = SATHook(p=1.0, epsilon=0.05)
    hook.trainer = SimpleNamespace(model=_NaNModel(), step=0, amp=False, scaler=_NO_SCALER)
    batch = _batch()
    out = hook.preprocess_batch(batch)
    assert out["images"] is batch["images"] and hook.nan_fallbacks == 1 and hook.applied == 0
    assert hook.state_dict() == {"applied": 0, "nan_fallbacks": 1}


class _Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 1, 3)

    def loss(self, images, targets, *, distill=True):  # the Detector.loss signature
        return {"loss": self.conv(images).square().mean()}


def test_the_coin_is_reproducible_per_step():
    def applied(seed):
        hook = SATHook(p=0.5, epsilon=0.01, seed=seed)
        hook.trainer = SimpleNamespace(model=_Tiny(), step=0, amp=False, scaler=_NO_SCALER)
        out = []
        for step in range(12):
            hook.trainer.step = step
            batch = _batch(2, 16)
            out.append(hook.preprocess_batch(batch)["images"] is not batch["images"])
        return out

    a = applied(0)
    assert a == applied(0) and 0 < sum(a) < 12 and a != applied(1)


def test_training_with_mosaic_sat_runs(compose_cfg, tmp_path, caplog):
    from facedet.engine.run import run_training

    cfg = compose_cfg(["aug=mosaic_sat", "aug.sat.p=1.0", "train.epochs=1", f"data.root={tmp_path / 'syn'}",
                       "data.num_train=16", "data.num_val=4", "data.img_size=64", "train.batch_size=8",
                       "train.num_workers=0", "train.tensorboard=false", "train.ema.enabled=false",
                       "train.threads=1"])
    with caplog.at_level("INFO"):
        result = run_training(cfg, tmp_path / "run", progress=False)
    assert np.isfinite(result["final"]["AP50"])
    assert any("SAT: 2 steps on adversarial images this epoch, 0 fell back" in r.getMessage() for r in caplog.records)
