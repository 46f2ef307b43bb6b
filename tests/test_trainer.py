"""Trainer pieces: gradient accumulation, YOLOv5's nominal-batch rule, the seeded epoch sampler
(order and augmentation independent of workers and of where a run resumed), RNG capture through a
safe checkpoint, signals, the single-process fall-backs of the distributed helpers, the
prediction grid."""

from __future__ import annotations

import random
import signal

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from facedet.checkpoint import load_checkpoint, save_checkpoint
from facedet.data import build_dataloader, collate
from facedet.data.loader import BatchSeeded, EpochSampler, ShardSampler
from facedet.engine import distributed as du
from facedet.engine.prediction_grid import PredictionGridHook
from facedet.engine.resume import config_differences
from facedet.engine.rng import capture_rng, restore_rng
from facedet.engine.run import accumulation
from facedet.engine.trainer import Trainer


class Linear(nn.Module):
    """A model with a ``loss`` whose value is a plain sum over images, so accumulating two batches
    of 2 must equal one batch of 4."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 1)

    def loss(self, images: torch.Tensor, targets: list) -> dict[str, torch.Tensor]:
        y = torch.stack([t["y"] for t in targets])
        loss = ((self.fc(images) - y) ** 2).sum()
        return {"loss": loss}


class Points(Dataset):
    def __init__(self, n: int) -> None:
        g = torch.Generator().manual_seed(1)
        self.x, self.y = torch.randn(n, 3, generator=g), torch.randn(n, 1, generator=g)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict:
        return {"image": self.x[i], "target": {"y": self.y[i]}, "meta": {}}


def linear_trainer(batch_size: int, accumulate: int) -> Trainer:
    torch.manual_seed(0)
    model = Linear()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    loader = DataLoader(Points(8), batch_size=batch_size, collate_fn=collate)
    return Trainer(model=model, optimizer=opt, train_loader=loader, device=torch.device("cpu"), max_epochs=2,
                   base_lr=0.05, lr_factor=lambda s: 1.0, accumulate=accumulate, handle_signals=False)


def test_accumulating_two_batches_equals_one_batch_of_twice_the_size():
    big, acc = linear_trainer(4, 1), linear_trainer(2, 2)
    big.train()
    acc.train()
    assert (big.optimizer_steps, acc.optimizer_steps, acc.step) == (4, 4, 8)
    for a, b in zip(big.model.parameters(), acc.model.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)
    no_acc = linear_trainer(2, 1)
    no_acc.train()
    assert not torch.allclose(no_acc.model.fc.weight, acc.model.fc.weight)


def test_nominal_batch_size_rule():
    assert accumulation(16, 64) == (4, 1.0)
    assert accumulation(24, 64) == (3, 24 * 3 / 64)  # round(2.67) = 3 batches: 72 images, decay x 1.125
    assert accumulation(128, 64) == (1, 2.0)  # larger than nominal: no accumulation, more decay
    assert accumulation(16, 0) == (1, 1.0)  # off


def test_epoch_sampler_order_is_a_function_of_seed_and_epoch_and_resumes_mid_epoch():
    data = list(range(20))

    def order(epoch: int, start: int = 0, seed: int = 3, rank: int = 0, world: int = 1) -> list:
        s = EpochSampler(data, batch_size=4, seed=seed, rank=rank, world_size=world)
        s.set_epoch(epoch, start)
        return list(s)

    e0, e1 = order(0), order(1)
    assert e0 == order(0) and e0 != e1 and sorted(i for i, _ in e0) == data
    assert [seed is not None for _, seed in e0] == [i % 4 == 0 for i in range(20)]  # one seed per batch
    assert order(1, start=2) == e1[8:]  # skipping 2 batches yields exactly the rest, seeds included
    assert order(0, seed=4) != e0
    r0, r1 = order(0, world=2, rank=0), order(0, world=2, rank=1)
    assert sorted(i for i, _ in r0 + r1) == data and len(r0) == len(r1) == 10
    assert len(EpochSampler(data, batch_size=4, seed=0)) == 20


class NoisyItems(Dataset):
    """Items drawn from numpy, python and a seedable 'transform' generator, like augmentations."""

    def __init__(self) -> None:
        self.transform = self
        self.rng = np.random.default_rng(0)

    def set_seed(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return 16

    def __getitem__(self, i: int) -> dict:
        value = torch.tensor([i, self.rng.random(), np.random.rand(), random.random()])
        target = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64),
                  "ignore": torch.zeros(0, dtype=torch.bool), "landmarks": torch.zeros(0, 5, 2)}
        return {"image": value, "target": target, "meta": {}}


def test_training_batches_do_not_depend_on_the_number_of_workers():
    """Augmentation seeds travel with the batches, so 0 or 2 workers load the same data (and a
    resumed run, with fresh workers, the same as an uninterrupted one)."""
    def batches(workers: int) -> list[torch.Tensor]:
        loader = build_dataloader(NoisyItems(), batch_size=4, shuffle=True, num_workers=workers, seed=5,
                                  drop_last=True)
        loader.sampler.set_epoch(1)
        return [b["images"][:, :2] for b in loader]  # index and the transform's draw

    zero, two = batches(0), batches(2)
    assert len(zero) == 4
    for a, b in zip(zero, two, strict=True):
        assert torch.equal(a, b)


def test_batch_seeded_wrapper_reads_and_writes_through():
    inner = NoisyItems()
    wrapped = BatchSeeded(inner)
    wrapped.flag = 3
    assert inner.flag == 3 and wrapped.transform is inner and len(wrapped) == 16
    a, b = wrapped[(2, 7)]["image"], wrapped[(2, 7)]["image"]
    assert torch.equal(a[:2], b[:2])  # the same seed -> the same transform draw


def test_shard_sampler_covers_every_index_once():
    shards = [list(ShardSampler(7, rank=r, world_size=3)) for r in range(3)]
    assert sorted(sum(shards, [])) == list(range(7)) and shards[0] == [0, 3, 6]


def test_rng_states_survive_a_weights_only_checkpoint(tmp_path):
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    save_checkpoint({"rng": [capture_rng()]}, tmp_path / "r.pt")
    expected = (random.random(), float(np.random.rand()), float(torch.rand(1)))
    random.seed(9)
    np.random.seed(9)
    torch.manual_seed(9)
    restore_rng(load_checkpoint(tmp_path / "r.pt")["rng"], rank=0)
    assert (random.random(), float(np.random.rand()), float(torch.rand(1))) == expected


def test_sigint_asks_for_a_clean_stop_and_a_second_one_quits():
    trainer = linear_trainer(2, 1)
    trainer._stop.handle(signal.SIGINT)
    assert trainer._stop.requested == "SIGINT"
    trainer.run_step(next(iter(trainer.train_loader)))  # the next optimizer step notices it
    assert trainer.interrupted == "SIGINT"
    with pytest.raises(KeyboardInterrupt):
        trainer._stop.handle(signal.SIGINT)


def test_distributed_helpers_fall_back_to_one_process():
    assert (du.get_rank(), du.get_world_size(), du.is_main_process()) == (0, 1, True)
    assert du.all_gather_objects({"a": 1}) == [{"a": 1}] and du.broadcast_object(5) == 5
    assert du.any_rank(True, False) == [True, False]
    evaluator = object()
    assert du.gather_across_ranks(evaluator) is evaluator
    assert du.hydra_overrides_for_rank() == []


def test_config_differences_lists_changed_leaves():
    old = {"train": {"epochs": 3, "batch_size": 8}, "seed": 0}
    new = {"train": {"epochs": 5, "batch_size": 8}, "seed": 0, "extra": 1}
    assert config_differences(old, new) == ["extra: '<absent>' -> 1", "train.epochs: 3 -> 5"]


def test_prediction_grid_draws_ground_truth_and_predictions():
    class OneBox(nn.Module):
        def predict(self, images: torch.Tensor) -> list[dict[str, torch.Tensor]]:
            box = torch.tensor([[4.0, 4.0, 20.0, 20.0]])
            return [{"boxes": box, "scores": torch.tensor([0.9]), "labels": torch.zeros(1)} for _ in images]

    item = {"image": torch.zeros(3, 32, 32), "target": {"boxes": torch.tensor([[10.0, 12.0, 30.0, 28.0]]),
                                                        "ignore": torch.tensor([False])}}
    grid = PredictionGridHook([item] * 3, num_images=2, nrow=2).render(OneBox(), torch.device("cpu"))
    assert grid.dtype == torch.uint8 and grid.shape == (3, 32 + 4, 2 * 32 + 6)
    tile = grid[:, 2:34, 2:34]
    assert tile[:, 20, 10].tolist() == [255, 0, 0]  # the prediction's bottom edge, red
    assert tile[:, 28, 25].tolist() == [0, 255, 0]  # the ground truth's bottom edge, green
    assert tile[:, 25, 6].tolist() == [0, 0, 0]  # inside neither
