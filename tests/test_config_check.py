"""Bad training input fails up front with one line naming the key (issue 12): typed config checks
(facedet/config_check.py) and an unwritable output folder (facedet/cli/common.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from facedet.cli.common import output_dir_problem
from facedet.config_check import TRAIN_RULES, validate_eval_config, validate_train_config
from facedet.registry import ConfigError

from .conftest import CONFIG_DIR, ROOT, compose_config

TINY = ["data.num_train=16", "data.num_val=4", "data.img_size=64", "train.epochs=1", "train.num_workers=0",
        "train.tensorboard=false"]


def train_cli(tmp_path: Path, *overrides: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, str(ROOT / "tools" / "train.py"), *TINY, f"data.root={tmp_path / 'data'}", *overrides]
    if not any(o.startswith("hydra.run.dir=") for o in overrides):
        cmd.append(f"hydra.run.dir={tmp_path / 'run'}")
    return subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=300,
                          env=dict(os.environ, PYTHONPATH=str(ROOT)))


def test_negative_epochs_fail_through_the_cli_before_any_data_is_touched(tmp_path):
    out = train_cli(tmp_path, "train.epochs=-1")
    assert out.returncode == 2, out.stderr
    assert "facedet: error: train.epochs must be an integer >= 1" in out.stderr and "got -1" in out.stderr
    assert "Traceback" not in out.stderr
    assert not (tmp_path / "data").exists()  # nothing was rendered


@pytest.mark.parametrize("override, key, why", [
    ("train.epochs=abc", "train.epochs", "got 'abc' (a string)"),
    ("train.epochs=1.5", "train.epochs", "got 1.5 (not an integer)"),
    ("optim.lr=abc", "optim.lr", "must be a number > 0"),
    ("optim.lr=-0.01", "optim.lr", "got -0.01"),
    ("optim.lr=nan", "optim.lr", "got nan"),
    ("data.img_size=abc", "data.img_size", "got 'abc'"),
    ("data.img_size=100", "data.img_size", "a multiple of 32"),
    ("data.img_size=0", "data.img_size", ">= 32"),
    ("train.batch_size=0", "train.batch_size", ">= 1"),
    ("train.nominal_batch_size=-1", "train.nominal_batch_size", ">= 0"),
    ("train.num_workers=-2", "train.num_workers", ">= 0"),
    ("train.threads=two", "train.threads", "got 'two'"),
    ("train.eval_interval=0", "train.eval_interval", ">= 1"),
    ("train.grad_clip=-1", "train.grad_clip", ">= 0"),
    ("optim.weight_decay=-0.1", "optim.weight_decay", ">= 0"),
    ("optim.beta1=1.0", "optim.beta1", "< 1"),
    ("optim.beta2=-0.5", "optim.beta2", ">= 0"),
    ("seed=abc", "seed", "must be an integer"),
    ("seed=true", "seed", "got True (bool)"),
    ("train.ema.decay=0", "train.ema.decay", "> 0 and <= 1"),
    ("train.ema.decay=1.5", "train.ema.decay", "> 0 and <= 1"),
    ("train.ema.tau=0", "train.ema.tau", "> 0"),
    ("train.ema.enabled=yes", "train.ema.enabled", "true or false"),
    ("train.amp=maybe", "train.amp", "one of true, false, fp16, bf16"),
    ("schedule.warmup_epochs=-1", "schedule.warmup_epochs", ">= 0"),
    ("schedule.warmup_min_steps=1.5", "schedule.warmup_min_steps", "not an integer"),
    ("schedule.final_ratio=2", "schedule.final_ratio", "<= 1"),
    ("eval.batch_size=0", "eval.batch_size", ">= 1"),
])
def test_each_bad_value_is_named_with_the_rule_and_an_example(override, key, why):
    with pytest.raises(ConfigError) as e:
        validate_train_config(compose_config([override]))
    msg = str(e.value)
    assert msg.startswith(f"{key} must be ") and why in msg and f"e.g. {key}=" in msg, msg


def test_sgd_momentum_is_checked():
    with pytest.raises(ConfigError, match=r"optim.momentum must be a number >= 0 and < 1 \(SGD's momentum\)"):
        validate_train_config(compose_config(["optim=sgd", "optim.momentum=1.0"]))


def test_every_shipped_config_passes_and_unknown_or_missing_keys_are_fine():
    options = [[]] + [[f"experiment={p.stem}"] for p in (CONFIG_DIR / "experiment").glob("*.yaml")]
    options += [[f"optim={p.stem}"] for p in (CONFIG_DIR / "optim").glob("*.yaml")]
    options += [[f"model={p.stem}"] for p in (CONFIG_DIR / "model").glob("*.yaml")]
    for o in options:
        validate_train_config(compose_config(o))  # no false alarms on what the project ships
    cfg = compose_config(["+train.my_experiment_knob=abc", "+optim.extra=1"])
    validate_train_config(cfg)
    del cfg.train.ema  # a partial config (tests build such) is checked only where it has keys
    validate_train_config(cfg)
    validate_train_config({"train": {"epochs": 3}})  # a plain mapping works too
    validate_eval_config(compose_config([], name="eval"))


def test_every_problem_is_reported_in_one_line():
    with pytest.raises(ConfigError) as e:
        validate_train_config(compose_config(["train.epochs=0", "optim.lr=0", "data.img_size=33"]))
    msg = str(e.value)
    assert "\n" not in msg and all(k in msg for k in ("train.epochs", "optim.lr", "data.img_size"))


def test_an_interpolation_that_does_not_resolve_is_named():
    cfg = OmegaConf.create({"train": {"epochs": "${nowhere.epochs}"}})
    with pytest.raises(ConfigError, match="train.epochs cannot be resolved"):
        validate_train_config(cfg)


def test_the_table_covers_what_the_brief_asks():
    required = ("train.epochs", "train.batch_size", "train.nominal_batch_size", "train.num_workers", "train.threads",
                "train.eval_interval", "train.grad_clip", "optim.lr", "optim.weight_decay", "data.img_size", "seed",
                "train.ema.decay")
    assert set(required) <= set(TRAIN_RULES)


def test_eval_values_are_checked_too():
    with pytest.raises(ConfigError, match=r"img_size must be an integer >= 32 and a multiple of 32 \(or null\)"):
        validate_eval_config(compose_config(["img_size=100"], name="eval"))
    with pytest.raises(ConfigError, match="score_thresh"):
        validate_eval_config(compose_config(["score_thresh=abc"], name="eval"))


def test_an_unwritable_run_folder_is_one_line_before_hydra(tmp_path):
    out = train_cli(tmp_path, "hydra.run.dir=/proc/x")
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot write the output folder /proc/x (hydra.run.dir)" in lines[0], out.stderr
    assert "Traceback" not in out.stderr and not (tmp_path / "data").exists()


def test_output_dir_problems_name_the_folder_that_refuses(tmp_path):
    (tmp_path / "file").write_text("")
    assert "is not a folder" in output_dir_problem(str(tmp_path / "file" / "run"))
    assert "/proc" in output_dir_problem("/proc/x/${now:%H}")
    assert output_dir_problem(str(tmp_path / "new" / "runs" / "${now:%Y}")) is None
    assert not (tmp_path / "new").exists()  # checking creates nothing that stays
