"""NaN/inf guard: a non-finite loss or gradient skips the optimizer step (weights, optimizer state
and EMA untouched), is counted and logged, and training goes on; N in a row stop it clearly."""

from __future__ import annotations

import math

import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from facedet.data import collate
from facedet.engine.ema import ModelEMA
from facedet.engine.hooks import EMAHook
from facedet.engine.optim import build_optimizer
from facedet.engine.trainer import HookBase, Trainer, TrainingDiverged
from facedet.models import build_detector

SIZE = 64


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny convolutions gain nothing from a second thread, and on a busy 2-core machine two
    spinning OpenMP threads make each step many times slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


class RandomFaces(Dataset):
    """Noise images with two boxes each: enough for the YOLO loss to produce gradients."""

    def __init__(self, n: int) -> None:
        g = torch.Generator().manual_seed(0)
        self.images = torch.rand((n, 3, SIZE, SIZE), generator=g)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> dict:
        boxes = torch.tensor([[8.0, 8.0, 30.0, 34.0], [36.0, 20.0, 60.0, 50.0]])
        target = {"boxes": boxes, "labels": torch.zeros(2, dtype=torch.int64),
                  "ignore": torch.zeros(2, dtype=torch.bool), "landmarks": torch.full((2, 5, 2), float("nan"))}
        return {"image": self.images[i], "target": target, "meta": {"image_id": str(i)}}


class PoisonAt(HookBase):
    """Makes the images of the given iterations NaN (the loss follows)."""

    def __init__(self, steps: set[int]) -> None:
        self.steps = steps

    def preprocess_batch(self, batch: dict) -> dict:
        if self.trainer.step in self.steps:
            return batch | {"images": torch.full_like(batch["images"], float("nan"))}
        return batch


class Snapshot(HookBase):
    """The weights after every iteration."""

    def __init__(self) -> None:
        self.weights: dict[int, dict[str, torch.Tensor]] = {}

    def after_step(self) -> None:
        self.weights[self.trainer.step] = {k: v.clone() for k, v in self.trainer.model.state_dict().items()}


def make_trainer(compose_cfg, hooks, *, ema: bool = False, accumulate: int = 1, patience: int = 3) -> Trainer:
    torch.manual_seed(0)
    model = build_detector(compose_cfg().model)
    if ema:
        hooks = [EMAHook(ModelEMA(model, tau=1.0)), *hooks]
    loader = DataLoader(RandomFaces(12), batch_size=2, collate_fn=collate)
    return Trainer(model=model, optimizer=build_optimizer(model, lr=0.01), train_loader=loader,
                   device=torch.device("cpu"), max_epochs=1, base_lr=0.01, lr_factor=lambda s: 1.0,
                   hooks=hooks, grad_clip=10.0, accumulate=accumulate, nan_patience=patience, handle_signals=False)


def test_a_nan_loss_skips_that_step_is_counted_and_training_finishes(compose_cfg, caplog):
    snap = Snapshot()
    trainer = make_trainer(compose_cfg, [PoisonAt({2}), snap], ema=True)
    with caplog.at_level("WARNING"):
        trainer.train()
    assert trainer.step == 6 and trainer.skipped_steps == 1 and trainer.optimizer_steps == 5
    assert math.isfinite(trainer.losses["loss"])  # the last step was a normal one
    after_2, after_3 = snap.weights[2], snap.weights[3]
    differ = [k for k in after_2 if not torch.equal(after_2[k], after_3[k])]
    assert not differ, f"the skipped step changed {differ[:3]}"
    assert any(not torch.equal(snap.weights[3][k], snap.weights[4][k]) for k in after_3)  # the next one trains
    assert trainer.hooks[0].ema.updates == 5  # the EMA did not average the skipped step
    assert all(torch.isfinite(v).all() for v in trainer.model.state_dict().values() if v.is_floating_point())
    assert "non-finite loss or gradient at epoch 1, step 2" in caplog.text and "1 in total" in caplog.text


def test_non_finite_gradients_with_a_finite_loss_are_skipped_too(compose_cfg):
    trainer = make_trainer(compose_cfg, [])
    param = next(trainer.model.parameters())
    handle = param.register_hook(lambda g: g * float("inf"))
    trainer.run_step(next(iter(trainer.train_loader)))
    handle.remove()
    assert math.isfinite(trainer.losses["loss"]) and not math.isfinite(trainer.grad_norm)
    assert trainer.skipped_steps == 1 and not trainer.stepped and trainer.optimizer.state == {}


def test_n_non_finite_steps_in_a_row_stop_training_with_a_clear_message(compose_cfg):
    trainer = make_trainer(compose_cfg, [PoisonAt({1, 2, 3})], patience=3)
    with pytest.raises(TrainingDiverged, match=r"NaN/inf for 3 optimizer steps in a row \(train.nan_patience=3\)"):
        trainer.train()
    assert trainer.skipped_steps == 3 and trainer.step == 3  # the first step (0) trained, then 3 were skipped


def test_a_nan_inside_an_accumulation_window_skips_the_whole_window(compose_cfg):
    trainer = make_trainer(compose_cfg, [PoisonAt({2})], accumulate=2)
    trainer.train()
    # 6 batches = 3 windows; the poisoned batch 2 spoils window 2 only
    assert trainer.optimizer_steps == 2 and trainer.skipped_steps == 1


def test_with_a_grad_scaler_an_overflow_lowers_the_scale_and_is_not_a_nan_step(compose_cfg):
    """The fp16 path, exercised on the CPU with an enabled GradScaler (no autocast here): inf
    gradients make GradScaler skip the step and halve the scale; the guard counts an overflow."""
    trainer = make_trainer(compose_cfg, [])
    trainer.scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    param = next(trainer.model.parameters())
    handle = param.register_hook(lambda g: g * float("inf"))
    trainer.run_step(next(iter(trainer.train_loader)))
    handle.remove()
    assert trainer.amp_overflow_steps == 1 and trainer.skipped_steps == 0 and not trainer.stepped
    assert trainer.scaler.get_scale() == 512.0 and trainer.optimizer.state == {}
    trainer.run_step(next(iter(trainer.train_loader)))  # a normal step goes through
    assert trainer.stepped and trainer.optimizer_steps == 1
