"""A tiny training run end to end: the run directory, its checkpoints, and re-evaluation of `best`.

The run is deliberately small (64 synthetic images at 128 px, 2 epochs) so it fits the default suite;
the full default job (AP50 >= 0.80 on the synthetic val split) is the `slow` test at the bottom.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from facedet.checkpoint import load_checkpoint
from facedet.cli.evaluate import evaluate_checkpoint
from facedet.engine.run import run_training

from .conftest import ROOT

TINY = [
    "data.num_train=48",
    "data.num_val=16",
    "data.img_size=128",
    "train.epochs=2",
    "train.eval_interval=1",
    "train.batch_size=8",
    "train.num_workers=0",
    "eval.batch_size=8",
]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict, object]:
    from hydra import compose, initialize_config_dir

    base = tmp_path_factory.mktemp("e2e")
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose(config_name="train", overrides=[*TINY, f"data.root={base / 'synthetic'}"])
    run_dir = base / "run"
    result = run_training(cfg, run_dir, progress=False)
    return run_dir, result, cfg


def test_run_directory_holds_config_metrics_predictions_checkpoints_and_logs(tiny_run) -> None:
    run_dir, result, cfg = tiny_run
    assert OmegaConf.load(run_dir / "config.yaml").train.epochs == 2
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics == json.loads(json.dumps(result))  # what run_training returned is what it wrote
    assert [h["epoch"] for h in metrics["history"]] == [1, 2]
    assert metrics["best"]["settings"]["img_size"] == 128  # the test size is recorded with the numbers
    assert 0.0 <= metrics["best"]["AP50"] <= 1.0
    assert metrics["best"]["AP50"] == max(h["AP50"] for h in metrics["history"])

    preds = json.loads((run_dir / "predictions.json").read_text())
    assert preds and {"image_id", "category_id", "bbox", "score"} <= set(preds[0])
    assert not list(run_dir.glob("*.tmp.json"))  # the temporary results file was renamed or replaced

    last = load_checkpoint(run_dir / "checkpoints" / "last.pt")
    best = load_checkpoint(run_dir / "checkpoints" / "best.pt")
    assert last["epoch"] == 1 and last["step"] == 2 * (48 // 8)
    assert best["metrics"]["AP50"] == metrics["best"]["AP50"]
    assert best["config"]["model"]["name"] == cfg.model.name
    assert list((run_dir / "tb").glob("events.out.tfevents.*"))


def test_eval_of_the_best_checkpoint_reproduces_training_ap(tiny_run, tmp_path: Path) -> None:
    run_dir, result, _ = tiny_run
    cfg = OmegaConf.create(
        {
            "checkpoint": str(run_dir / "checkpoints" / "best.pt"),
            "data": None,
            "img_size": None,
            "score_thresh": None,
            "nms_iou": None,
            "max_det": None,
            "use_ema": True,
            "batch_size": 4,  # another batch size than training used: the result must not depend on it
            "num_workers": 0,
            "device": "cpu",
        }
    )
    metrics = evaluate_checkpoint(cfg, tmp_path)
    assert metrics["AP50"] == pytest.approx(result["best"]["AP50"], abs=0.005)
    assert metrics["AP"] == pytest.approx(result["best"]["AP"], abs=0.005)
    assert metrics["settings"]["weights"] == "ema"
    assert json.loads((tmp_path / "metrics.json").read_text())["AP50"] == metrics["AP50"]


def _cli(*args: str, timeout: int = 120) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("FACEDET_DEBUG", None)
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )


def test_cli_typo_in_an_override_fails_at_once_naming_the_key() -> None:
    proc = _cli("tools/train.py", "model.backbone.widht=0.5")
    assert proc.returncode != 0
    assert "widht" in proc.stderr and "Traceback" not in proc.stderr


def test_cli_unknown_component_fails_with_the_known_names_and_no_traceback(tmp_path: Path) -> None:
    proc = _cli(
        "tools/train.py",
        "model.backbone.type=cspdarknet54",
        f"data.root={tmp_path / 'never_generated'}",
        f"hydra.run.dir={tmp_path / 'run'}",
    )
    assert proc.returncode == 2
    assert "Unknown backbone 'cspdarknet54'" in proc.stderr and "Did you mean 'cspdarknet'" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "never_generated").exists()  # it failed before touching the data


def test_cli_eval_prints_the_checkpoint_metrics(tiny_run, tmp_path: Path) -> None:
    run_dir, result, _ = tiny_run
    proc = _cli(
        "tools/eval.py",
        f"checkpoint={run_dir / 'checkpoints' / 'best.pt'}",
        "num_workers=0",
        f"hydra.run.dir={tmp_path}",
    )
    assert proc.returncode == 0, proc.stderr
    assert f"AP50 {result['best']['AP50']:.4f}" in proc.stdout
    assert json.loads((tmp_path / "metrics.json").read_text())["settings"]["img_size"] == 128


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_default_job_reaches_ap50_080(tmp_path: Path, seed: int) -> None:
    """README command 1: `python tools/train.py` with no overrides but the seed (6-8 minutes each on
    2 cores), then `tools/eval.py` on its best checkpoint reproduces the AP50 within 0.005. The
    README states the range over these three seeds (bench/default_job.py prints it)."""
    proc = _cli("tools/train.py", f"seed={seed}", f"hydra.run.dir={tmp_path / 'train'}", timeout=1800)
    assert proc.returncode == 0, proc.stderr[-2000:]
    metrics = json.loads((tmp_path / "train" / "metrics.json").read_text())
    assert metrics["best"]["AP50"] >= 0.80
    best = tmp_path / "train" / "checkpoints" / "best.pt"
    assert torch.load(best, weights_only=True)["metrics"]["AP50"] >= 0.80
    proc = _cli("tools/eval.py", f"checkpoint={best}", f"hydra.run.dir={tmp_path / 'eval'}", timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    again = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert abs(again["AP50"] - metrics["best"]["AP50"]) <= 0.005
