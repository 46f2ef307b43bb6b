"""High-res training then a fine-tune at the deployment size (aug.high_res, docs/SMALL_FACES.md
section 5): the schedule of batch sizes in a real run (with SAT and close-mosaic, and across a
resume), exact box and landmark scaling, a downsized mosaic against one rendered small, evaluation
at data.img_size, the config errors, and off = the run of before."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from facedet.builders import build_loaders, train_img_size
from facedet.data import FaceDataset, Mosaic, build_transforms
from facedet.data.records import LoadStats
from facedet.engine.data_hooks import build_data_hooks
from facedet.engine.high_res import HighResHook
from facedet.engine.hook_base import PRIORITY_SAT, HookBase, sort_hooks
from facedet.engine.run import run_training
from facedet.engine.sat import SATHook
from facedet.registry import ConfigError
from tests.test_mosaic import _face_images

HI, LO = 96, 64  # the high-res and the deployment size of the tiny runs


def _hook(epoch: int, *, size: int = 416, img_size: int = 320, finetune: int = 2, epochs: int = 5,
          min_face_size: float = 0.0) -> HighResHook:
    hook = HighResHook(size=size, img_size=img_size, finetune_epochs=finetune, min_face_size=min_face_size)
    hook.trainer = SimpleNamespace(epoch=epoch, max_epochs=epochs)
    hook.before_train()
    return hook


def _batch(size: int) -> dict:
    """One image with a white face at a known place and one tiny face; landmarks partly missing (NaN)."""
    images = torch.zeros(1, 3, size, size)
    images[:, :, 104:208, 52:156] = 1.0
    boxes = torch.tensor([[52.0, 104.0, 156.0, 208.0], [300.0, 300.0, 304.8, 305.0]])
    landmarks = torch.tensor([[[80.0, 140.0], [130.0, 140.0], [104.0, 160.0], [85.0, 185.0], [125.0, 185.0]],
                              [[math.nan, math.nan]] * 5])
    target = {"boxes": boxes, "labels": torch.zeros(2, dtype=torch.int64), "ignore": torch.zeros(2, dtype=torch.bool),
              "landmarks": landmarks}
    return {"images": images, "targets": [target]}


def test_batches_keep_the_high_size_until_the_fine_tune_then_scale_exactly():
    assert _hook(2).plan(5) == "epochs 1-3 at 416, 4-5 at 320"
    batch = _batch(416)
    assert _hook(2).preprocess_batch(batch) is batch  # epoch 3 of 5: high-res, untouched
    out = _hook(3, min_face_size=4).preprocess_batch(batch)  # epoch 4: the fine-tune
    f = 320 / 416
    t, t0 = out["targets"][0], batch["targets"][0]
    assert out["images"].shape == (1, 3, 320, 320)
    assert torch.equal(t["boxes"], t0["boxes"] * f)
    assert torch.equal(t["landmarks"][0], t0["landmarks"][0] * f) and t["landmarks"][1].isnan().all()
    assert t["ignore"].tolist() == [False, True]  # 4.8 px at 416 -> 3.7 px at 320: below min_face_size=4
    # the pixels went where the box went: the white face is inside the scaled box, grey only at its edges
    x1, y1, x2, y2 = (int(v) for v in t["boxes"][0])  # 40, 80, 120, 160: whole pixels at both sizes
    img = out["images"][0, 0]
    assert img[y1 + 1: y2 - 1, x1 + 1: x2 - 1].min() > 0.999  # the antialiasing filter blurs one pixel each side
    inside = torch.zeros_like(img, dtype=torch.bool)
    inside[y1 - 1: y2 + 1, x1 - 1: x2 + 1] = True
    assert img[~inside].max() < 1e-6
    with pytest.raises(RuntimeError, match="expected training batches of 416 px, got 320"):
        _hook(3).preprocess_batch(_batch(320))


@pytest.mark.parametrize("p", [1.0, 0.0])  # a mosaic, and a single letterboxed image (after close-mosaic)
def test_a_downsized_high_res_item_matches_one_rendered_at_the_deployment_size(tmp_path, p):
    records, images = _face_images(tmp_path, n=6)
    items = {}
    for size in (416, 320):
        ds = FaceDataset(records, transform=build_transforms([], size), stats=LoadStats(source="t", images=6, faces=1))
        ds._cache = images
        m = Mosaic(ds, size=size, p=p, scale=0.5, translate=0.1, min_visible=0.3)
        for seed in range(4):  # the same random draws: mosaic draws fractions of its size
            m.set_seed(seed)
            items[size, seed] = m[seed]
    for seed in range(4):
        hi, lo = items[416, seed], items[320, seed]
        out = _hook(4).preprocess_batch({"images": hi["image"][None], "targets": [hi["target"]]})
        diff = (out["images"][0] - lo["image"]).abs()
        assert diff.mean() < 0.01  # differs by the second interpolation only (edges of the white faces)
        got, want = out["targets"][0]["boxes"], lo["target"]["boxes"]
        assert got.shape == want.shape and (got - want).abs().max() < 1.0  # mosaic places tiles on whole pixels


def test_config_errors_name_the_key(compose_cfg):
    def size(*overrides: str) -> int:
        cfg = compose_cfg(["data.img_size=320", *overrides])
        return train_img_size(cfg.data, cfg.aug)

    assert size() == 320 and size("aug.high_res.size=416") == 416
    with pytest.raises(ConfigError, match=r"aug.high_res.size must be a multiple of 32.*got 400"):
        size("aug.high_res.size=400")
    with pytest.raises(ConfigError, match=r"aug.high_res.size=256 is below data.img_size=320"):
        size("aug.high_res.size=256")
    with pytest.raises(ConfigError, match=r"aug.high_res.size and aug.multi_scale.enabled cannot be combined"):
        size("aug.high_res.size=416", "aug.multi_scale.enabled=true")
    with pytest.raises(ConfigError, match=r"aug.high_res.finetune_epochs must be >= 0"):
        build_data_hooks({"high_res": {"size": 416, "finetune_epochs": -1}}, train_dataset=None, img_size=320,
                         seed=0, tensorboard=False)
    with pytest.raises(ConfigError, match=r"'aug.high_res.img_size' is set by the framework"):
        build_data_hooks({"high_res": {"size": 416, "img_size": 416}}, train_dataset=None, img_size=320, seed=0,
                         tensorboard=False)


def test_off_by_default_and_before_sat_when_on(compose_cfg):
    cfg = compose_cfg(["experiment=facemask"])
    assert cfg.aug.high_res.size == 0 and train_img_size(cfg.data, cfg.aug) == cfg.data.img_size == 320
    assert not any(isinstance(h, HighResHook) for h in build_data_hooks(
        cfg.aug, train_dataset=None, img_size=320, seed=0, tensorboard=True))
    on = build_data_hooks({"high_res": {"size": 416, "finetune_epochs": 5}, "sat": {"p": 0.5}, "min_face_size": 4},
                          train_dataset=None, img_size=320, seed=0, tensorboard=False)
    assert [type(h) for h in sort_hooks(on)] == [HighResHook, SATHook]  # SAT attacks the fine-tune's images
    assert on[0].min_face_size == 4.0


def test_the_loaders_train_at_the_high_size_and_evaluate_at_data_img_size(compose_cfg, tmp_path):
    cfg = compose_cfg([f"data.root={tmp_path}", "data.num_train=4", "data.num_val=2", f"data.img_size={LO}",
                       "aug=mosaic", f"aug.high_res.size={HI}"])
    train, val = build_loaders(cfg.data, cfg.aug, batch_size=2, val_batch_size=2, num_workers=0, seed=0)
    train.sampler.set_epoch(0)
    assert next(iter(train))["images"].shape[-2:] == (HI, HI)
    assert next(iter(val))["images"].shape[-2:] == (LO, LO)


class SizeSpy(HookBase):
    """Records (epoch, size) of what the model's forward passes see, in training (the step and SAT's
    attack) and in evaluation, and the size of the batches SAT handed on; stops the run after
    ``stop_at`` steps."""

    priority = PRIORITY_SAT + 1

    def __init__(self, stop_at: int = 0) -> None:
        self.train: list[tuple[int, int]] = []
        self.eval: list[int] = []
        self.fed: list[tuple[int, int]] = []
        self.stop_at = stop_at

    def before_train(self) -> None:
        t = self.trainer
        for model in {id(t.model): t.model, id(t.eval_model): t.eval_model}.values():
            model.backbone.register_forward_pre_hook(self._record)

    def _record(self, module: torch.nn.Module, args: tuple) -> None:
        size = args[0].shape[-1]
        if module.training:
            self.train.append((self.trainer.epoch, size))
        else:
            self.eval.append(size)

    def preprocess_batch(self, batch: dict) -> dict:
        self.fed.append((self.trainer.epoch, batch["images"].shape[-1]))
        return batch

    def after_step(self) -> None:
        if self.trainer.step == self.stop_at:
            self.trainer.request_stop("test")


def _run(compose_cfg, tmp_path: Path, name: str, spy: SizeSpy, *extra: str) -> dict:
    cfg = compose_cfg([f"data.root={tmp_path / 'data'}", "data.num_train=12", "data.num_val=2", f"data.img_size={LO}",
                       "model.backbone.width=0.125", "model.neck.width=0.25", "aug=mosaic_sat", "aug.sat.p=1.0",
                       "aug.close_mosaic=1", f"aug.high_res.size={HI}", "aug.high_res.finetune_epochs=1",
                       "train.epochs=3", "train.batch_size=4", "train.nominal_batch_size=4", "train.num_workers=0",
                       "train.eval_interval=2", "train.tensorboard=false", "train.vis_images=0", "eval.batch_size=2",
                       *extra])
    return run_training(cfg, tmp_path / name, progress=False, extra_hooks=[spy])


def test_a_run_trains_high_then_fine_tunes_sat_sees_the_final_size_and_resume_keeps_the_schedule(compose_cfg,
                                                                                                 tmp_path):
    first = SizeSpy(stop_at=4)  # 3 steps per epoch: stops at the next step, the second of epoch 2 of 3
    assert _run(compose_cfg, tmp_path, "run", first)["interrupted"] == "test"
    resumed = SizeSpy()
    res = _run(compose_cfg, tmp_path, "run", resumed, f"train.resume={tmp_path / 'run/checkpoints/last.pt'}")
    assert res["resumed_from"] and res["epochs_done"] == 3 and res["steps"] == 9 and len(first.fed) == 5
    fed = first.fed + resumed.fed  # one batch per step, after SAT
    assert fed == [(0, HI)] * 3 + [(1, HI)] * 3 + [(2, LO)] * 3
    # every training forward (SAT's attack and the step, p=1: two per step) at the size of its epoch
    assert first.train + resumed.train == [(e, s) for e, s in fed for _ in range(2)]
    # evaluated after epochs 2 (training at HI) and 3: always at data.img_size
    assert not first.eval and resumed.eval and set(resumed.eval) == {LO}
    assert [h["epoch"] for h in res["history"]] == [2, 3]
    assert np.isfinite(res["final"]["AP50"])
