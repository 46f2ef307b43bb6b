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


# The hook state keys of today and the class names checkpoints of earlier versions used instead.
LEGACY_HOOK_NAMES = {"ema": "EMAHook", "eval": "EvalHook", "sat": "SATHook", "checkpoint": "CheckpointHook",
                     "logging": "LoggingHook", "prediction_grid": "PredictionGridHook", "dropblock": "DropBlockHook",
                     "close_mosaic": "CloseMosaicHook", "multi_scale": "MultiScaleHook",
                     "sample_grid": "SampleGridHook"}


def to_legacy_layout(ckpt: dict) -> dict:
    """``ckpt`` as the versions before the hook state keys and optimizer/schedule ``type`` wrote it:
    hook state under class names, ``optim.name``, AdamW's beta1 as ``optim.momentum`` with an unused
    ``optim.nesterov``, a schedule without ``type``, and the model keys before their rename
    (``iou_t``, ``ignore_thresh``, ``iou_thresh``)."""
    import copy

    from facedet.models.model_config import RENAMED_KEYS

    old = dict(ckpt)
    old["hooks"] = {LEGACY_HOOK_NAMES.get(k, k): v for k, v in ckpt["hooks"].items()}
    config = copy.deepcopy(ckpt["config"])
    for old_key, new_key in RENAMED_KEYS:
        *parents, leaf = new_key.split(".")
        node = config["model"]
        for part in parents:
            node = node[part]
        node[old_key.rsplit(".", 1)[1]] = node.pop(leaf)
    optim = config["optim"]
    optim["name"] = optim.pop("type")
    if optim["name"] == "adamw":
        assert optim.pop("beta2") == 0.999  # the only value older versions had
        optim["momentum"], optim["nesterov"] = optim.pop("beta1"), False
    config["schedule"].pop("type")
    old["config"] = config
    return old
