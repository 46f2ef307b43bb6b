"""Hooks run in ``priority`` order whatever order they are given in; the run's hooks keep the order
they always had; the aug hooks are built from the HOOKS registry by their aug key; the eval node is
parsed once (EvalSpec); configs of the older layout compare equal after ``upgrade_config``."""

from __future__ import annotations

import random
from types import SimpleNamespace

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn
from torch.utils.data import DataLoader

from facedet.builders import build_eval_spec
from facedet.config_check import upgrade_config
from facedet.data import MixUp
from facedet.engine.data_hooks import CloseMosaicHook, MultiScaleHook, SampleGridHook, build_data_hooks
from facedet.engine.hook_base import HookBase, sort_hooks
from facedet.engine.optim import build_optimizer
from facedet.engine.resume import config_differences, incompatible
from facedet.engine.run import run_training
from facedet.engine.sat import SATHook
from facedet.engine.trainer import Trainer
from facedet.inference.tta import TTA
from facedet.registry import ConfigError

# The order run_training's hooks always had (issue 13 keeps it, now by priority).
RUN_ORDER = ["EMAHook", "EvalHook", "PredictionGridHook", "DropBlockHook", "CloseMosaicHook", "MultiScaleHook",
             "SATHook", "SampleGridHook", "Spy", "CheckpointHook", "LoggingHook"]


class Spy(HookBase):
    """An extra hook (default priority) that records the trainer's hook order and the shared state."""

    def __init__(self, log: list[str] | None = None, name: str = "spy") -> None:
        self.log, self.name, self.order, self.writer_seen = log, name, [], None

    def before_train(self) -> None:
        self.order = [type(h).__name__ for h in self.trainer.hooks]
        if self.log is not None:
            self.log.append(self.name)

    def before_epoch(self) -> None:  # every before_train has run: the LoggingHook's comes last
        self.writer_seen = self.trainer.tb_writer


class _Early(Spy):
    priority = 5


class _Late(Spy):
    priority = 950


def test_hooks_given_in_another_order_run_in_priority_order():
    calls: list[str] = []
    hooks = [_Late(calls, "late"), Spy(calls, "a"), _Early(calls, "early"), Spy(calls, "b")]
    random.Random(0).shuffle(hooks)
    ordered = sort_hooks(hooks)
    assert [h.priority for h in ordered] == sorted(h.priority for h in hooks)
    model = nn.Linear(2, 1)
    loader = DataLoader([0], batch_size=1)
    trainer = Trainer(model=model, optimizer=build_optimizer(model, lr=0.1), train_loader=loader,
                      device=torch.device("cpu"), max_epochs=0, base_lr=0.1, lr_factor=lambda s: 1.0,
                      hooks=[_Late(calls, "late"), Spy(calls, "a"), _Early(calls, "early"), Spy(calls, "b")],
                      handle_signals=False)
    trainer.train()  # no epochs: before_train and after_train only
    assert calls == ["early", "a", "b", "late"]  # equal priorities keep the given order (a before b)
    assert trainer.eval_model is model and trainer.tb_writer is None and trainer.best_metrics is None


def test_the_runs_hooks_keep_their_order(compose_cfg, tmp_path):
    spy = Spy()
    cfg = compose_cfg(["model.backbone.width=0.125", "model.neck.width=0.25", "model.backbone.dropblock=0.1",
                       "aug=mosaic_sat", "aug.multi_scale.enabled=true", "aug.close_mosaic=1",
                       f"data.root={tmp_path / 'data'}", "data.num_train=4", "data.num_val=2", "data.img_size=64",
                       "train.epochs=1", "train.batch_size=4", "train.num_workers=0", "train.tensorboard=true",
                       "train.vis_images=0", "eval.batch_size=2"])
    run_training(cfg, tmp_path / "run", progress=False, extra_hooks=[spy])
    assert spy.order == RUN_ORDER
    assert spy.writer_seen is not None  # the LoggingHook set the declared writer before any batch


def test_aug_hooks_are_built_by_their_registered_name():
    aug = {"train": [], "min_face_size": 4, "close_mosaic": 2, "sat": {"p": 0.5, "epsilon": 0.01},
           "multi_scale": {"enabled": True, "min_scale": 0.5, "max_scale": 1.0}}
    mosaic_wrapper = MixUp([], p=0.5)  # the dataset chain close-mosaic switches off
    hooks = build_data_hooks(aug, train_dataset=mosaic_wrapper, img_size=64, seed=3, tensorboard=True)
    assert [type(h) for h in sort_hooks(hooks)] == [CloseMosaicHook, MultiScaleHook, SATHook, SampleGridHook]
    ms, sat = sort_hooks(hooks)[1:3]
    assert ms.sizes == [32, 64] and ms.min_face_size == 4.0 and (sat.p, sat.epsilon, sat.seed) == (0.5, 0.01, 3)
    off = {"close_mosaic": 0, "multi_scale": {"enabled": False}, "sat": {"p": 0.0, "epsilon": 0.02}}
    assert build_data_hooks(off, train_dataset=mosaic_wrapper, img_size=64, seed=0, tensorboard=False) == []
    with pytest.raises(ConfigError, match=r"Unknown key 'aug.sat.eps' for hook 'sat'.*Did you mean 'epsilon'"):
        build_data_hooks({"sat": {"p": 0.5, "eps": 0.1}}, train_dataset=None, img_size=64, seed=0, tensorboard=False)
    with pytest.raises(ConfigError, match="'aug.multi_scale.seed' is set by the framework"):
        build_data_hooks({"multi_scale": {"enabled": True, "seed": 1}}, train_dataset=None, img_size=64, seed=0,
                         tensorboard=False)


def test_the_sample_grid_uses_the_trainers_writer():
    images = []
    writer = SimpleNamespace(add_image=lambda tag, img, step, dataformats: images.append((tag, step)))
    hook = SampleGridHook(max_images=1)
    hook.trainer = SimpleNamespace(tb_writer=writer, step=7)
    batch = {"images": torch.zeros(1, 3, 32, 32),
             "targets": [{"boxes": torch.zeros(0, 4), "ignore": torch.zeros(0, dtype=torch.bool),
                          "landmarks": torch.zeros(0, 10)}]}
    hook.preprocess_batch(batch)
    hook.preprocess_batch(batch)
    assert images == [("train/batch", 7)]


def test_eval_spec_parses_the_eval_node_once(compose_cfg, tmp_path):
    cfg = compose_cfg(["eval.tta=flip", "eval.pr_curve=false"])
    records = []
    spec = build_eval_spec(cfg.eval, records, interval=3, best_metric="AP")
    assert [type(e).__name__ for e in spec.evaluators] == ["COCOEvaluator", "LandmarkEvaluator"]
    assert spec.tta == TTA.from_mode("flip") and not spec.pr_curve and (spec.interval, spec.best_metric) == (3, "AP")
    default = build_eval_spec(None, records)
    assert default.tta == TTA() and default.pr_curve and len(default.evaluators) == 1
    with pytest.raises(ConfigError, match="flipp"):
        build_eval_spec({"tta": "flipp"}, records)


def test_a_config_of_the_older_layout_is_upgraded_before_comparing(compose_cfg):
    new = OmegaConf.to_container(compose_cfg([]), resolve=True)
    old = {**new, "optim": {"name": "adamw", "lr": new["optim"]["lr"], "momentum": 0.9, "nesterov": False,
                            "weight_decay": new["optim"]["weight_decay"]},
           "schedule": {k: v for k, v in new["schedule"].items() if k != "type"}}
    assert len(config_differences(old, new)) == 7  # without the upgrade: name/type, momentum/beta1, beta2, ...
    assert upgrade_config(old) == new and incompatible(old, new) == []
    assert old["optim"]["name"] == "adamw"  # not changed in place
    sgd = OmegaConf.to_container(compose_cfg(["optim=sgd"]), resolve=True)
    old_sgd = {**sgd, "optim": {("name" if k == "type" else k): v for k, v in sgd["optim"].items()}}
    assert upgrade_config(old_sgd)["optim"] == sgd["optim"]
    assert incompatible({**old, "optim": {**old["optim"], "momentum": 0.8}}, new) == ["optim.beta1: 0.8 -> 0.9"]


def test_a_config_stored_before_keys_were_added_resumes_while_they_stay_off(compose_cfg):
    new = OmegaConf.to_container(compose_cfg([]), resolve=True)
    old = {k: v for k, v in new.items() if k != "distill"}  # an older version's config, before the added keys
    old["aug"] = {k: v for k, v in new["aug"].items() if k not in ("copy_paste", "oversample", "high_res")}
    old["model"] = {**new["model"], "backbone": {k: v for k, v in new["model"]["backbone"].items()
                                                 if k != "out_strides"},
                    "loss": {k: v for k, v in new["model"]["loss"].items()
                             if k not in ("obj_mining", "box_weight_by_size")}}
    assert incompatible(old, new) == []
    on = {**new, "aug": {**new["aug"], "copy_paste": {**new["aug"]["copy_paste"], "p": 0.5}},
          "model": {**new["model"], "backbone": {**new["model"]["backbone"], "out_strides": [4, 8, 16, 32]}}}
    assert sorted(d.split(":")[0] for d in incompatible(old, on)) == ["aug.copy_paste", "model.backbone.out_strides"]
    assert config_differences({}, {"extra": 1}) == ["extra: '<absent>' -> 1"]  # keys not in the table still count
