"""Exact resume: a run killed with SIGKILL at a random step, or stopped by SIGTERM mid-epoch, and
resumed ends bit-identical to an uninterrupted run; resuming with more epochs stretches the schedule;
a checkpoint of another model config is refused with the keys listed. Which checkpoint
train.resume=true/auto may pick: tests/test_checkpoint_safety.py."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from facedet.checkpoint import CheckpointError, load_checkpoint, model_weights
from facedet.engine.optim import WarmupCosine
from facedet.engine.resume import find_resume_checkpoint
from facedet.engine.run import run_training
from facedet.engine.trainer import HookBase
from tests.checkpoint_utils import to_legacy_layout

ROOT = Path(__file__).resolve().parents[1]
EPOCHS, BATCHES = 4, 6  # 24 training images / batch 4; accumulate 2 -> 3 optimizer steps per epoch


def tiny_overrides(data_root: Path, *extra: str) -> list[str]:
    """A few dozen CPU steps: nano model at 64 px, deterministic kernels, one thread, accumulation
    over 2 batches (so resume has to land on accumulation boundaries), no workers."""
    return [
        f"data.root={data_root}", "data.num_train=24", "data.num_val=4", "data.img_size=64",
        "train.batch_size=4", "train.nominal_batch_size=8", f"train.epochs={EPOCHS}", "train.num_workers=0",
        "train.threads=1", "train.deterministic=true", "train.eval_interval=100", "train.tensorboard=false",
        "train.vis_images=0", "schedule.warmup_min_steps=4", "train.ema.tau=10", *extra,
    ]


class RandomJitter(HookBase):
    """Draws from the python, numpy and torch generators every step, as SAT, multi-scale or DropBlock
    do, and lets the draws change the images: a resumed run only matches if every RNG was restored."""

    def preprocess_batch(self, batch: dict) -> dict:
        scale = 1 + 0.02 * random.random() - 0.02 * float(np.random.rand())
        return batch | {"images": (batch["images"] * scale + 0.02 * torch.rand_like(batch["images"])).clamp(0, 1)}


class StepPrinter(HookBase):
    """Reports each step; at ``wait_at`` it stops there until the test kills the process."""

    def __init__(self, wait_at: int) -> None:
        self.wait_at = wait_at

    def after_step(self) -> None:
        print(f"step {self.trainer.step}", flush=True)
        if self.trainer.step == self.wait_at:
            time.sleep(600)


class SignalAtStep(HookBase):
    """Sends this process ``sig`` after iteration ``step`` (mid-accumulation when odd)."""

    def __init__(self, step: int, sig: int) -> None:
        self.at, self.sig = step, sig

    def after_step(self) -> None:
        if self.trainer.step == self.at:
            os.kill(os.getpid(), self.sig)


class RecordLR(HookBase):
    def __init__(self) -> None:
        self.lrs: dict[int, float] = {}

    def after_step(self) -> None:
        self.lrs[self.trainer.step - 1] = self.trainer.lr


CHILD = """
import json, sys
from hydra import compose, initialize_config_dir
from facedet.engine.run import run_training
from tests.test_resume import RandomJitter, StepPrinter
with initialize_config_dir(config_dir=sys.argv[1], version_base="1.3"):
    cfg = compose(config_name="train", overrides=json.loads(sys.argv[3]))
run_training(cfg, sys.argv[2], progress=False, extra_hooks=[RandomJitter(), StepPrinter(int(sys.argv[4]))])
"""


def tensors(ckpt: dict) -> dict[str, torch.Tensor]:
    """Every tensor a continued run depends on: weights, EMA, optimizer momentum, RNG states."""
    out = {f"model.{k}": v for k, v in ckpt["model"].items()}
    out |= {f"ema.{k}": v for k, v in ckpt["hooks"]["ema"]["module"].items()}
    for pid, st in ckpt["optimizer"]["state"].items():
        out |= {f"opt.{pid}.{k}": v for k, v in st.items() if torch.is_tensor(v)}
    out["rng.torch"] = ckpt["rng"][0]["torch"]
    return out


def assert_identical(a_path: Path, b_path: Path, note: str) -> None:
    a, b = load_checkpoint(a_path), load_checkpoint(b_path)
    ta, tb = tensors(a), tensors(b)
    assert ta.keys() == tb.keys()
    differ = [k for k in ta if not torch.equal(ta[k], tb[k])]
    assert not differ, f"{note}: {len(differ)} tensors differ, e.g. {differ[:5]}"
    for key in ("step", "optimizer_steps", "epoch", "epoch_done"):
        assert a[key] == b[key], (note, key)
    assert a["hooks"]["ema"]["updates"] == b["hooks"]["ema"]["updates"]


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("synthetic")


@pytest.fixture(scope="module")
def reference(data_root, tmp_path_factory) -> Path:
    """The uninterrupted run (EPOCHS epochs); its run directory."""
    from hydra import compose, initialize_config_dir

    run_dir = tmp_path_factory.mktemp("reference")
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose(config_name="train", overrides=tiny_overrides(data_root))
    result = run_training(cfg, run_dir, progress=False, extra_hooks=[RandomJitter()])
    assert result["steps"] == EPOCHS * BATCHES and result["optimizer_steps"] == EPOCHS * BATCHES // 2
    return run_dir


def test_sigkill_at_a_random_step_then_resume_is_bit_identical(compose_cfg, data_root, reference, tmp_path):
    kill_at = random.SystemRandom().randint(5, EPOCHS * BATCHES - 3)
    killed = tmp_path / "killed"
    overrides = tiny_overrides(data_root, "train.save_interval=1")  # last.pt after every optimizer step
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(ROOT / "configs"), str(killed), json.dumps(overrides), str(kill_at)],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        for line in child.stdout:
            if line.strip() == f"step {kill_at}":  # the child waits there, before that step's checkpoint
                child.send_signal(signal.SIGKILL)
                break
    finally:
        child.kill()
        child.wait()
    assert child.returncode == -signal.SIGKILL, f"the child ended before step {kill_at}"
    last = killed / "checkpoints" / "last.pt"
    saved = load_checkpoint(last)
    assert 0 < saved["step"] < EPOCHS * BATCHES, saved["step"]

    resumed = tmp_path / "resumed"
    result = run_training(compose_cfg(overrides + [f"train.resume={last}"]), resumed, progress=False,
                          extra_hooks=[RandomJitter()])
    assert result["resumed_from"] == str(last) and result["steps"] == EPOCHS * BATCHES
    assert_identical(reference / "checkpoints" / "last.pt", resumed / "checkpoints" / "last.pt",
                     f"killed after step {kill_at}, resumed from step {saved['step']}")
    assert (resumed / "metrics.json").is_file()


def test_sigterm_mid_epoch_saves_last_and_resumes_exactly(compose_cfg, data_root, reference, tmp_path):
    # step 9 is the 3rd batch of epoch 2: mid-accumulation, so training goes on to batch 4 and stops there
    cfg = compose_cfg(tiny_overrides(data_root))
    runs = tmp_path / cfg.name  # Hydra's default layout runs/<name>/<time>: resume=true searches it
    stopped = run_training(cfg, runs / "a", progress=False,
                           extra_hooks=[RandomJitter(), SignalAtStep(9, signal.SIGTERM)])
    assert stopped["interrupted"] == "SIGTERM" and stopped["steps"] == 10
    saved = load_checkpoint(runs / "a" / "checkpoints" / "last.pt")
    assert (saved["epoch"], saved["iter_in_epoch"], saved["epoch_done"]) == (1, 4, False)
    assert signal.getsignal(signal.SIGTERM) is not None  # the previous handler is back

    cfg_b = compose_cfg(tiny_overrides(data_root, "train.resume=true"))
    config_b = OmegaConf.to_container(cfg_b, resolve=True)
    path = find_resume_checkpoint(True, runs / "b", name=cfg.name, config=config_b)  # an earlier run of the name
    assert path == runs / "a" / "checkpoints" / "last.pt"
    result = run_training(cfg_b, runs / "b", progress=False, extra_hooks=[RandomJitter()])
    assert result["interrupted"] is None and result["steps"] == EPOCHS * BATCHES
    assert result["resumed_from"] == str(path)
    assert_identical(reference / "checkpoints" / "last.pt", runs / "b" / "checkpoints" / "last.pt",
                     "SIGTERM after step 9")


def test_a_checkpoint_of_the_older_layout_resumes_exactly(compose_cfg, data_root, reference, tmp_path):
    """A run stopped by an older version (hook state under class names, optim.name/momentum/nesterov,
    no schedule.type, model keys iou_t/ignore_thresh/iou_thresh) is found by train.resume=true and
    continues bit-identically."""
    cfg = compose_cfg(tiny_overrides(data_root))
    runs = tmp_path / cfg.name
    run_training(cfg, runs / "a", progress=False, extra_hooks=[RandomJitter(), SignalAtStep(9, signal.SIGTERM)])
    last = runs / "a" / "checkpoints" / "last.pt"
    legacy = to_legacy_layout(load_checkpoint(last))
    assert "EMAHook" in legacy["hooks"] and "name" in legacy["config"]["optim"]
    assert "iou_t" in legacy["config"]["model"]["loss"]["assigner"]
    torch.save(legacy, last)
    assert model_weights(load_checkpoint(last))[0] == "ema"

    cfg_b = compose_cfg(tiny_overrides(data_root, "train.resume=true"))
    result = run_training(cfg_b, runs / "b", progress=False, extra_hooks=[RandomJitter()])
    assert result["resumed_from"] == str(last) and result["steps"] == EPOCHS * BATCHES
    assert_identical(reference / "checkpoints" / "last.pt", runs / "b" / "checkpoints" / "last.pt",
                     "resumed from a checkpoint of the older layout")


def test_resume_with_more_epochs_stretches_the_cosine(compose_cfg, data_root, reference, tmp_path, caplog):
    more = EPOCHS + 2
    lr = RecordLR()
    cfg = compose_cfg(tiny_overrides(data_root, f"train.epochs={more}",
                                     f"train.resume={reference / 'checkpoints' / 'last.pt'}"))
    with caplog.at_level("INFO", logger="facedet"):
        result = run_training(cfg, tmp_path / "more", progress=False, extra_hooks=[lr])
    assert result["epochs_done"] == more and result["steps"] == more * BATCHES
    assert sorted(lr.lrs) == list(range(EPOCHS * BATCHES, more * BATCHES))  # only the new epochs ran
    # warmup: schedule.warmup_epochs=1 -> BATCHES steps (more than warmup_min_steps=4)
    stretched = WarmupCosine(total_steps=more * BATCHES, warmup_steps=BATCHES, final_ratio=cfg.schedule.final_ratio,
                             warmup_start=cfg.schedule.warmup_start)
    for step, value in lr.lrs.items():
        assert value == pytest.approx(cfg.optim.lr * stretched(step))
    old = WarmupCosine(total_steps=EPOCHS * BATCHES, warmup_steps=BATCHES, final_ratio=cfg.schedule.final_ratio,
                       warmup_start=cfg.schedule.warmup_start)
    assert stretched(EPOCHS * BATCHES) > old(EPOCHS * BATCHES)  # the rate steps back up the longer cosine
    assert f"train.epochs changed {EPOCHS} -> {more}" in caplog.text
    metrics = json.loads((tmp_path / "more" / "metrics.json").read_text())
    assert [h["epoch"] for h in metrics["history"]] == [EPOCHS, more]  # the history carried over


def test_resuming_another_model_config_lists_the_keys(compose_cfg, data_root, reference, tmp_path):
    cfg = compose_cfg(tiny_overrides(data_root, "model.backbone.width=0.5",
                                     f"train.resume={reference / 'checkpoints' / 'last.pt'}"))
    pattern = (r"trained with another model config \(model\.backbone\.width: [\d.]+ -> 0\.5\): .*does not fit this "
               r"model config: .*shape mismatch \(\d+\): backbone")
    with pytest.raises(CheckpointError, match=pattern) as e:
        run_training(cfg, tmp_path / "other", progress=False)
    assert "\n" not in str(e.value)  # one line for the command line


def test_resume_true_without_a_checkpoint_is_a_clear_error_and_auto_starts_afresh(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoints/last.pt"):
        find_resume_checkpoint(True, tmp_path / "new")
    assert find_resume_checkpoint("auto", tmp_path / "new") is None
    assert find_resume_checkpoint(False, tmp_path / "new") is None
    with pytest.raises(CheckpointError, match="not found"):
        find_resume_checkpoint(str(tmp_path / "missing.pt"), tmp_path / "new")
