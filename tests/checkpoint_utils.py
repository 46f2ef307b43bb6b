"""A tiny trained checkpoint for the CLI tests, made once per test session by a real (one step)
training run, so the tests also cover run_training's evaluation wiring and the checkpoint format."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from .conftest import CONFIG_DIR

TINY = ["data.num_train=8", "data.num_val=6", "data.img_size=64", "train.epochs=1", "train.batch_size=8",
        "train.num_workers=0", "train.tensorboard=false", "model.backbone.width=0.125", "model.postprocess.max_det=30",
        "train.best_metric=coco_ap50", "seed=0"]
_made: dict[str, Path] = {}


def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The run folder of a 1-step training on 8 synthetic images (best.pt, metrics.json, pr_curves/)."""
    if "run" not in _made:
        from facedet.engine.run import run_training

        base = tmp_path_factory.mktemp("tiny_run")
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
            cfg = compose(config_name="train", overrides=[*TINY, f"data.root={base / 'synthetic'}"])
        run_training(cfg, base / "run", progress=False)
        _made["run"] = base / "run"
    return _made["run"]
